"""How the app reaches a workspace, local or remote: :func:`open_access` and the :class:`RunAccess` protocol."""

from gui.access.base import CommandError, CommandTimeout, RunAccess, Stat, Unreachable, open_access

__all__ = ["CommandError", "CommandTimeout", "RunAccess", "Stat", "Unreachable", "open_access"]
