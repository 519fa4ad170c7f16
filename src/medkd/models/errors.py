"""Errors of the model layer."""

from medkd.errors import MedkdError


class ModelError(MedkdError):
    """A model name, weights file or setting that cannot be used; the message says what to do."""
