"""Light and dark themes: a Qt style sheet from resources/ plus plot colors."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

RESOURCES = files("resources")


@dataclass(frozen=True)
class Theme:
    name: str
    plot_bg: str
    fg: str
    axis: str
    muted: str
    control: str  # control-action markers
    palette: tuple[str, ...]
    state_colors: dict

    def style_sheet(self) -> str:
        try:
            return (RESOURCES / f"{self.name}.qss").read_text()
        except OSError:
            return ""


# Series colors: distinguishable for the common color-vision deficiencies
# (Okabe-Ito based), each readable on its theme's background.
_STATES_LIGHT = {
    "running": "#15803d",
    "paused": "#b45309",
    "stalled": "#b45309",
    "stopping": "#b45309",
    "preparing": "#1d4ed8",
    "starting": "#1d4ed8",
    "finished": "#334155",
    "early_stopped": "#334155",
    "stopped": "#334155",
    "pruned": "#334155",
    "failed": "#b91c1c",
}
_STATES_DARK = {
    "running": "#4ade80",
    "paused": "#fbbf24",
    "stalled": "#fbbf24",
    "stopping": "#fbbf24",
    "preparing": "#60a5fa",
    "starting": "#60a5fa",
    "finished": "#cbd5e1",
    "early_stopped": "#cbd5e1",
    "stopped": "#cbd5e1",
    "pruned": "#cbd5e1",
    "failed": "#f87171",
}

LIGHT = Theme(
    "light",
    plot_bg="#ffffff",
    fg="#1f2937",
    axis="#9ca3af",
    muted="#6b7280",
    control="#7c3aed",
    palette=("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7f7f7f", "#000000"),
    state_colors=_STATES_LIGHT,
)
DARK = Theme(
    "dark",
    plot_bg="#1b1d22",
    fg="#e5e7eb",
    axis="#4b5563",
    muted="#9ca3af",
    control="#a78bfa",
    palette=("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#F0E442", "#D55E00", "#bdbdbd", "#ffffff"),
    state_colors=_STATES_DARK,
)
THEMES = {"light": LIGHT, "dark": DARK}
