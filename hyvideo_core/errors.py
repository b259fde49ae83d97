"""The engine's exception hierarchy.

Every message says what was expected, what was found and what to do next, so a ComfyUI
user reading it in the error panel can act without opening the source.
"""


class HyVideoError(Exception):
    """Base class for every error the engine raises on purpose."""


class InputError(HyVideoError, ValueError):
    """A call argument (shape, size, frame count, option) is not acceptable."""


class CheckpointError(HyVideoError):
    """A weights file could not be read, or is not a file this engine understands."""


class UnknownCheckpointError(CheckpointError):
    """The file's tensors do not match any registered variant or layout."""


class IncompatibleWeightsError(CheckpointError):
    """The file matches a variant but has missing, unexpected or mis-shaped tensors."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle checkpoint needs arbitrary code execution to load; refused."""


class OutputWriteError(HyVideoError, OSError):
    """An output file or folder could not be written (full disk, quota, read-only or forbidden folder)."""


class BackendUnavailableError(HyVideoError):
    """An attention backend (or other optional accelerator) was required but is missing."""


class Interrupted(HyVideoError):
    """Raised by a progress callback to stop sampling or decoding between steps."""
