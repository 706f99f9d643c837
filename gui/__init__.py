"""Podium's desktop app (PySide6 + pyqtgraph). Never imports torch."""

import os

# NumPy asks the kernel for 2 MB pages for every large array; first touching one can make the kernel
# compact memory, a pause of 5-10 ms inside a plain copy on the GUI thread. The series grow by small
# copies (gui.models.growable) that gain nothing from huge pages. Read when numpy is first imported.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
