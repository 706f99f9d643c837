"""How the app writes durations, sizes, times and values: one home, so every panel reads the same."""

from __future__ import annotations

import math
import time
from typing import Any


def format_duration(seconds: float, short: bool = False) -> str:
    """``1d 02h 05m``, ``1h 05m 20s``, ``3m20s``, ``42s``; ``short`` (axis ticks) keeps the two largest units."""
    if not math.isfinite(seconds):
        return "?"
    sign = "-" if seconds < 0 else ""
    s = int(round(abs(seconds)))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{sign}{d}d{h:02d}h" if short else f"{sign}{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{sign}{h}h{m:02d}m" if short else f"{sign}{h}h {m:02d}m {sec:02d}s"
    if m:
        return f"{sign}{m}m{sec:02d}s"
    return f"{sign}{sec}s"


def format_duration_coarse(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``: a length of time in a table column, one unit."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_value(v: float) -> str:
    """A metric's value in four significant digits, very large or small ones in exponent form; NaN and Inf named."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4g}"


def format_param(value: Any) -> str:
    """A hyperparameter's value: floats in four significant digits, anything else as it is, None as blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_loss(value: float | None) -> str:
    """A loss in a table (fixed four decimals, so a column of them lines up); blank when there is none."""
    return "" if value is None else f"{value:.4f}"


def format_si(value: float) -> str:
    """1e6 -> 1M: model sizes and token counts as people say them."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def format_error(value: float | None) -> str:
    """A fitted value's standard error (``?`` when it could not be estimated)."""
    return "?" if value is None or not math.isfinite(value) else f"{value:.2g}"


def format_size(n: int | None) -> str:
    """Bytes in the largest binary unit below 1024 (``532 B``, ``1.5 MB``); blank when unknown."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_date_time(t: float | None) -> str:
    """A wall-clock time with its date (local time); blank when unknown."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def format_clock(t: float | None) -> str:
    """A wall-clock time of today's kind (``14:03:27``, local time), for event lists; blank when unknown."""
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
