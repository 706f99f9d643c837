"""Work around PySide6 6.12 over-releasing ``None`` on Python < 3.12.

PySide6-Essentials 6.12.0's stable-ABI wheels return ``None`` from every void
method (``QPen.setWidthF``, ``QGraphicsItem.setToolTip``, ...) without taking
a reference to it. On Python 3.12+ ``None`` is immortal and nothing happens;
on 3.11 each call drops its refcount by one, and after a few thousand calls
(one frame of plotting) the interpreter aborts with "deallocating None".
6.11.3 does not do this. Until the dependency is pinned below 6.12, give the
singletons the same practical immortality 3.12 gives them: a refcount so
large that no run could ever drain it. Checked, not assumed: the refcount
field is only touched where it is where CPython 3.11 puts it.
"""
from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40


def apply() -> bool:
    """Raise the refcounts of None/True/False where needed; returns whether it did."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    try:
        from importlib.metadata import version

        pyside = tuple(int(p) for p in version("PySide6-Essentials").split(".")[:2])
    except Exception:  # not installed as a distribution (e.g. a system Qt): be safe and guard
        pyside = (6, 12)
    if pyside < (6, 12):
        return False
    for obj in (None, True, False):
        cell = ctypes.c_ssize_t.from_address(id(obj))
        # getrefcount counts its own argument: the field must read one or two below.
        if not 0 <= sys.getrefcount(obj) - cell.value <= 2:
            return False
        if cell.value < _HEADROOM:
            cell.value += _HEADROOM
    return True
