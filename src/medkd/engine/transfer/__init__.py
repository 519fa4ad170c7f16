"""Transfer modes, one registered class each (scratch, finetune, linear, lp-ft); a mode registered from outside
medkd is one class and `register_transfer("name")`."""

from medkd.engine.transfer import finetune, linear, lp_ft, scratch  # noqa: F401  (each registers itself)
from medkd.engine.transfer.base import (
    TRANSFER_MODES,
    TransferMode,
    TransferSettings,
    register_transfer,
    transfer_mode,
    transfer_mode_class,
    transfer_settings,
)

__all__ = ["TRANSFER_MODES", "TransferMode", "TransferSettings", "register_transfer", "transfer_mode",
           "transfer_mode_class", "transfer_settings"]
