"""The version of fastmlp: in one low module, so that any layer may read it."""

__version__ = "0.1.0"
