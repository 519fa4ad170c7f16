"""The one preprocessing definition: decoded image -> uint8 array (C, H, W) at the working resolution."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from medkd.data.config import Preprocessing

_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking, cheap enough for full-size X-rays


def preprocess(image: Image.Image, settings: Preprocessing) -> np.ndarray:
    """Convert to the configured channels and resize by the configured policy; returns uint8 (C, H, W)."""
    image = image.convert("L" if settings.channels == 1 else "RGB")
    assert settings.size is not None  # resolved (medkd.data.prepared.opened) before any image is preprocessed
    side = (settings.size, settings.size)
    if settings.resize == "squash":
        image = image.resize(side, _RESAMPLE)
    elif settings.resize == "pad":
        image = ImageOps.pad(image, side, method=_RESAMPLE, color=0)
    else:
        image = ImageOps.fit(image, side, method=_RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
