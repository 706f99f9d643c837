"""Live metric plots (pyqtgraph): the dashboard and its parts.

``dashboard`` binds runs to plots and ``frames`` redraws them; ``follow`` keeps the x range, ``crosshair``
the readout's x; ``finder`` (filter, pins, maximised plot) and ``arrange`` decide which plots each ``grid``
lays out, ``view`` is the central area (filter box, runs' legend, empty state); ``metric_plot`` is one plot,
``title`` its legend and readout, ``markers`` its markers' tooltips, ``curve`` one series in it.
"""

from gui.widgets.plots.curve import PlotSettings
from gui.widgets.plots.dashboard import Dashboard
from gui.widgets.plots.metric_plot import style_axes

__all__ = ["Dashboard", "PlotSettings", "style_axes"]
