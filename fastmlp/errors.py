"""Errors a user should see as one plain line (the CLI prints them without a traceback)."""


class FastMLPError(Exception):
    """Base class: the message is the whole story, shown as `error: <message>`."""


class ConfigError(FastMLPError):
    """A flag or a sweep parameter has a value fastmlp cannot use. setting: the name of the
    settings-table field at fault, when there is one (the estimator names its own
    parameter from it)."""

    def __init__(self, message: str, setting: str = None):
        super().__init__(message)
        self.setting = setting


class DataError(FastMLPError):
    """A data file is missing, corrupt or fails its checksum."""


class DivergedError(FastMLPError):
    """Training produced a NaN or infinite loss."""


class ModelFileError(FastMLPError):
    """A model file is missing, corrupt or of another format/architecture."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name: the part of a
    library's (wandb's, Pillow's, SQLAlchemy's) long message a user is shown."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cannot_write(path, error: OSError) -> FastMLPError:
    """The one wording of a failed write: `cannot write <path>: <reason>`."""
    return FastMLPError(f"cannot write {path}: {error.strerror or error}")
