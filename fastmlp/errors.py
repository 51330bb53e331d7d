"""Errors a user should see as one plain line (the CLI prints them without a traceback)."""


class FastMLPError(Exception):
    """Base class: the message is the whole story, shown as `error: <message>`."""


class ConfigError(FastMLPError):
    """A flag or a sweep parameter has a value fastmlp cannot use."""


class DataError(FastMLPError):
    """A data file is missing, corrupt or fails its checksum."""


class DivergedError(FastMLPError):
    """Training produced a NaN or infinite loss."""


class ModelFileError(FastMLPError):
    """A model file is missing, corrupt or of another format/architecture."""
