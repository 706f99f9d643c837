"""Live metric plots (pyqtgraph): the dashboard and its parts.

``dashboard`` schedules frames and binds runs to plots; ``follow`` keeps the x range, ``crosshair`` the
readout's x; ``grid`` lays plots out; ``metric_plot`` is one plot, ``title`` its legend and readout,
``curve`` one series in it.
"""

from gui.widgets.plots.curve import PlotSettings
from gui.widgets.plots.dashboard import Dashboard
from gui.widgets.plots.metric_plot import style_axes

__all__ = ["Dashboard", "PlotSettings", "style_axes"]
