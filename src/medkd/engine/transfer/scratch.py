"""scratch: every layer trains from the starting weights (none: random), at one learning rate."""

from __future__ import annotations

from typing import Literal

from medkd.engine.transfer.base import TransferMode, TransferSettings, register_transfer


class ScratchSettings(TransferSettings):
    name: Literal["scratch"] = "scratch"


@register_transfer("scratch")
class Scratch(TransferMode):
    Settings = ScratchSettings
    expects_pretrained = False
