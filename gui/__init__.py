"""Podium's desktop app (PySide6 + pyqtgraph). Never imports torch."""

import os

# NumPy asks the kernel for 2 MB pages for every large array; first touching one can make the kernel
# compact memory, a pause of 5-10 ms inside a plain copy on the GUI thread. The series grow by small
# copies (gui.models.growable) that gain nothing from huge pages. NumPy reads this when first imported, so
# it is set before; the window takes it out again once it exists (numpy is loaded by then), so that the
# processes the app starts (training runs) keep numpy's default.
_HUGEPAGES = "NUMPY_MADVISE_HUGEPAGE"
_set_here = _HUGEPAGES not in os.environ
os.environ.setdefault(_HUGEPAGES, "0")


def forget_numpy_setting() -> None:
    """Take the setting above out of the environment the app's child processes inherit (if the app set it)."""
    global _set_here
    if _set_here:
        os.environ.pop(_HUGEPAGES, None)
        _set_here = False
