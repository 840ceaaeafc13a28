"""The exception types users see. Each message is one line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class SlimvisionError(Exception):
    """Base class for every error slimvision raises on purpose (the CLI prints these in one line)."""


class InputError(SlimvisionError):
    """A file given by the user cannot be used: names the file and says what is wrong with it."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageTooLargeError(InputError):
    """An image has more pixels than the caller allows (its header says so, before decoding)."""


class UnsupportedImageError(InputError):
    """Bytes that do not start like any image format we decode (checked from the bytes, not a name)."""


class OutputError(SlimvisionError):
    """An output cannot be written (exists already, is an input, or the folder is not writable)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(SlimvisionError):
    """A configuration value or key is invalid."""


class MissingAssetError(SlimvisionError):
    """Bundled weights or data are missing because the package that ships them is not installed."""
