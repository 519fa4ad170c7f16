"""medkd's own CNNs: the from-scratch reference and the deployment-size student."""

from __future__ import annotations

from torch import nn

from medkd.models.registry import register_model


@register_model("baseline_cnn", stem="0", classifier="14")
def baseline_cnn(num_classes: int, in_chans: int = 3, width: int = 32, hidden: int = 128, dropout: float = 0.5,
                 pooled_side: int = 8) -> nn.Module:
    """The reference CNN trained from scratch: two conv layers (ReLU, max-pool), flatten, two
    fully-connected layers with dropout, output layer. An adaptive pool to `pooled_side` before the
    flatten keeps the parameter count the same at every input resolution."""
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(pooled_side), nn.Flatten(),
        nn.Linear(2 * width * pooled_side**2, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden // 2), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden // 2, num_classes),
    )


@register_model("compact_cnn", stem="0", classifier="17")
def compact_cnn(num_classes: int, in_chans: int = 3, width: int = 32, hidden: int = 64, dropout: float = 0.2,
                stem_stride: int = 1) -> nn.Module:
    """A deployment-size student: three conv blocks (conv, batch-norm, ReLU, pool) and a small dense head.
    width 32 gives about 100k parameters; parameters grow with width squared. stem_stride 2 makes the first
    convolution strided: the same parameters at about a quarter of the multiply-accumulates."""

    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(in_chans, width, stem_stride), *block(width, 2 * width), *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4 * width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
