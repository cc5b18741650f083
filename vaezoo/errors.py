"""Exceptions that carry a message a user can act on.

Every error raised on purpose by vaezoo derives from :class:`VaezooError`, so the CLI can print its
message (which names the problem and the fix) without a traceback from deep inside torch.
"""


class VaezooError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(VaezooError, ValueError):
    """A configuration key or value is not valid."""


class DataError(VaezooError, ValueError):
    """A data set is missing, malformed, or does not fit the model."""


class CheckpointError(VaezooError):
    """A checkpoint is missing, corrupt, or was written for something else."""


class TrainingError(VaezooError, RuntimeError):
    """Training cannot continue (for example, the loss became NaN)."""
