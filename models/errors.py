"""The one exception type of ``models``."""

from __future__ import annotations


class BundleError(ValueError):
    """A model bundle cannot be saved, read, trusted or run.

    The message is a full sentence that names the file involved and the problem.
    It subclasses ``ValueError`` so callers that treat bad input generically
    still catch it.
    """
