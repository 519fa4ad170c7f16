"""medkd: small, fast, trustworthy medical image classifiers by transfer learning and distillation."""

__version__ = "0.1.0"
