"""The HTTP service: JSON endpoints over a `Collection` and a small result page."""

from mmsearch.serve.app import Limits, create_app

__all__ = ["Limits", "create_app"]
