"""Errors of the model layer."""


class ModelError(Exception):
    """A model name, weights file or setting that cannot be used; the message says what to do."""
