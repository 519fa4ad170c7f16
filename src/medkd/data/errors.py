"""Errors of the data layer: each says what is wrong, where, and what to do."""

from __future__ import annotations

from medkd.errors import MedkdError


class DataError(MedkdError):
    """A problem with the user's data or data settings that the user can fix."""


class BadImageError(DataError):
    """One input file (or array row) that cannot become an image."""

    def __init__(self, ref: str, problem: str, advice: str = "fix or remove the file") -> None:
        self.ref = ref
        self.problem = problem
        self.advice = advice
        super().__init__(f"{ref}: {problem} ({advice})")


class NotAnImageError(BadImageError):
    """Bytes in no image format medkd reads (JPEG, PNG, BMP, TIFF, DICOM with pixel data)."""


class TooManyPixelsError(BadImageError):
    """An image above the pixel limit (a possible decompression bomb)."""
