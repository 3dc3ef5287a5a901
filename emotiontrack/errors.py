"""Typed errors: the CLI turns each into a one-line message and a non-zero exit."""


class EmotionTrackError(Exception):
    """Base class: anything the user can fix (bad input, bad option, missing file)."""


class InputError(EmotionTrackError):
    """An input video, image folder or dataset cannot be used."""


class DecodeError(InputError):
    """ffmpeg could not read the input."""


class ModelError(EmotionTrackError):
    """The model file is missing, unreadable or does not fit the task."""


class OutputError(EmotionTrackError):
    """An output path cannot be created or written."""


class UsageError(EmotionTrackError):
    """Options that cannot be used together (exit status 2, as for argparse's own errors)."""


class Cancelled(BaseException):
    """Raised from a progress callback to stop an input when its run is interrupted (a BaseException, so that
    no `except Exception` turns it into a failed input); its staging folder is removed on the way out."""
