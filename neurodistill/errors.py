"""Typed user errors.

Every exception here is a mistake in what the user gave us (a path, a flag, a file), not a
bug. The CLI catches `NeurodistillError`, prints `str(err)` as one line and exits with
status 2; anything else is a bug and keeps its traceback.
"""


class NeurodistillError(Exception):
    """Base of all user errors; the message is one line: what, where, what is allowed."""

    exit_code = 2


class ConfigError(NeurodistillError):
    """A config file or option has an unknown key, a wrong type or a bad value."""


class DatasetError(NeurodistillError):
    """A data directory is missing or not in the layout the loader expects."""


class InstallError(NeurodistillError):
    """An installed package neurodistill needs does not import (e.g. torch and torchaudio of two releases)."""


class ModelError(NeurodistillError):
    """An unknown model name, or model arguments the model does not accept."""


class MethodError(NeurodistillError):
    """An unknown distillation method, or a method used without what it needs."""


class InputFileError(NeurodistillError):
    """A file the user gave cannot be used: missing, not a regular file, too large, not the kind of
    file expected, or damaged."""


class UnsafeFileError(InputFileError):
    """A file that would make the tool read other files (HDF5 external links, external storage,
    virtual datasets, filter plugins) or run code (a pickle global outside the allowed ones)."""


class CheckpointError(InputFileError):
    """A checkpoint (or another file of the chain: bundle, NIR graph, simulation) is missing,
    corrupt, truncated, or does not fit what it is used for."""


class UnsupportedLayerError(NeurodistillError):
    """A module that the export stage cannot map to the target."""


class HardwareConstraintError(NeurodistillError):
    """A network that does not fit the target hardware's limits."""
