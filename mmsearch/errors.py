"""Exceptions the library raises; the CLI maps them to exit codes."""


class MmsearchError(Exception):
    """A failure the user can act on (the CLI exits 1)."""


class UsageError(MmsearchError):
    """A wrong argument or option (the CLI exits 2)."""


class ModelMismatchError(UsageError):
    """The store was built with another model than the one asked for."""


class StoreLockedError(MmsearchError):
    """Another process is writing to the store."""


class BadMediaError(Exception):
    """A file that cannot be decoded; it is skipped and reported, never fatal."""
