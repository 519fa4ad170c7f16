"""The one preprocessing definition: decoded image -> uint8 array (C, H, W) at the working resolution."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from medkd.data.config import Preprocessing
from medkd.data.decode import DecodedImage
from medkd.data.errors import DataError

_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking, cheap enough for full-size X-rays


def preprocess(image: DecodedImage | Image.Image, settings: Preprocessing) -> np.ndarray:
    """Convert to the configured channels and resize by the configured policy; returns uint8 (C, H, W).

    Grey and RGB images are converted to `settings.channels` (1 or 3); an image of C planes (MRI modalities)
    keeps them, and must have as many as `settings.channels`: each plane is resized alike.
    """
    assert settings.size is not None and settings.channels is not None  # resolved (data.prepared.opened) first
    planes = image.planes if isinstance(image, DecodedImage) else None
    if planes is None:
        picture = image.image if isinstance(image, DecodedImage) else image
        if settings.channels not in (1, 3):
            raise DataError(f"a {'grey' if picture.mode == 'L' else 'colour'} image cannot become "
                            f"{settings.channels} channels: this model reads {settings.channels}-channel images "
                            "(e.g. MRI modalities), give it images of that kind")
        array = np.asarray(_resized(picture.convert("L" if settings.channels == 1 else "RGB"), settings))
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if len(planes) != settings.channels:
        raise DataError(f"the image has {len(planes)} channels but {settings.channels} are configured "
                        f"(data.preprocessing.channels): leave it unset to use the data's own {len(planes)}")
    return np.stack([np.asarray(_resized(plane, settings)) for plane in planes])


def _resized(image: Image.Image, settings: Preprocessing) -> Image.Image:
    assert settings.size is not None
    side = (settings.size, settings.size)
    if settings.resize == "squash":
        return image.resize(side, _RESAMPLE)
    if settings.resize == "pad":
        return ImageOps.pad(image, side, method=_RESAMPLE, color=0)
    return ImageOps.fit(image, side, method=_RESAMPLE)
