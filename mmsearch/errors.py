"""Exceptions the library raises; the CLI maps them to exit codes, HTTP to status codes."""


class MmsearchError(Exception):
    """A failure the user can act on (the CLI exits 1)."""


class UsageError(MmsearchError):
    """A wrong argument or option (the CLI exits 2; HTTP 400)."""


class ModelMismatchError(UsageError):
    """The store was built with another model than the one asked for."""


class SchemaError(UsageError):
    """Values that do not fit the store's column types; nothing was written (HTTP 400)."""


class LimitError(UsageError):
    """A request over one of the limits (`mmsearch.limits`); HTTP 413, naming the limit."""

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


class StoreLockedError(MmsearchError):
    """Another process is writing to the store (HTTP 503 with Retry-After)."""


class StoreDamagedError(MmsearchError):
    """A store file is missing or damaged; `mmsearch doctor` names and repairs it (HTTP 503)."""


class MediaChangedError(MmsearchError):
    """An indexed file changed or was replaced since it was indexed (HTTP 409)."""


class BadMediaError(Exception):
    """A file that cannot be decoded; it is skipped and reported, never fatal."""
