"""Names the settings of other packages refer to, importable without torch: recipes are validated before any
network is built."""

from __future__ import annotations

from typing import Literal, get_args

# penultimate: the classification layer's input (for torchvision/timm classifiers, the globally pooled features);
# pooled: the network's last feature map with a spatial extent, averaged over space (the input of a dense head);
# blocks: the last feature map at each spatial resolution, each averaged over space, concatenated (low-level
# statistics as well as high-level ones: Lee et al. 2018's feature ensemble, here one Gaussian over all of them).
FeatureKind = Literal["penultimate", "pooled", "blocks"]
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)
