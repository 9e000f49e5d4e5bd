"""Moved to `mmsearch.fileio` (shared by the store and the index); kept for old imports."""

from mmsearch.fileio import fsync_dir, write_atomic, write_json_atomic

__all__ = ["fsync_dir", "write_atomic", "write_json_atomic"]
