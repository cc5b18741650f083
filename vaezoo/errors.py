"""Exceptions that carry a message a user can act on.

Every error raised on purpose by vaezoo derives from :class:`VaezooError`, so the CLI can print its
message (which names the problem and the fix) without a traceback from deep inside torch.
"""


class VaezooError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(VaezooError, ValueError):
    """A configuration key or value is not valid.

    ``key``, ``value`` and ``allowed`` name the offending field, when there is one, so the command line
    can restate the message in terms of the flag the user typed.
    """

    def __init__(self, message: str, key: str | None = None, value: object = None, allowed: str = ""):
        super().__init__(message)
        self.key, self.value, self.allowed = key, value, allowed


class DataError(VaezooError, ValueError):
    """A data set is missing, malformed, or does not fit the model."""


class CheckpointError(VaezooError):
    """A checkpoint is missing, corrupt, or was written for something else."""


class TrainingError(VaezooError, RuntimeError):
    """Training cannot continue (for example, the loss became NaN)."""
