"""The contract's errors that callers catch without loading its models (the app imports this before its first paint)."""

from __future__ import annotations


class CommandError(ValueError):
    """A command refused: unknown, malformed, or not allowed for this run; the message says which."""
