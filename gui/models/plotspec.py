"""Which series go into which plot: the dashboard's layout as data. Qt-free.

Series are named ``<source>/<key>`` by :class:`~gui.models.run_model.RunModel`
(``metrics/loss``, ``eval/val_loss``, ``system/rank0/rss_mb``,
``sample/pitch_class_entropy``). A spec lists glob patterns with a label; a
``*`` in the pattern is the rank or device number and fills ``{}`` in the
label. Musical metrics have no fixed names, so every ``sample/*`` series and
every other ``eval/*`` series (not the loss or its bookkeeping) gets a plot of
its own, one per metric: the samples' round means and a validation pass's value
of the same metric share it, next to the corpus reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlotSpec:
    key: str
    title: str
    patterns: tuple[tuple[str, str], ...]
    # Used instead of ``patterns`` for runs not on CUDA (memory: RSS, not GPU memory).
    cpu_patterns: tuple[tuple[str, str], ...] = ()
    log_y: bool = False
    optional: bool = False  # hidden until a series for it exists (GPU plots on a CPU run)
    points: bool = False  # sparse series (samples, evaluations): draw symbols too
    smooth: bool = True  # False: always the raw values (a schedule: smoothing turns a set_lr step into a ramp)
    # Musical plots: the metric whose corpus reference (RunModel.music_reference)
    # is drawn as a line, or a fixed reference level where the metric defines one.
    reference: str = ""
    reference_level: float | None = None
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)

    def label_for(self, name: str, env: dict[str, Any] | None = None) -> str | None:
        """The curve label of series ``name`` in this plot, or None if it does not belong."""
        found = self._match(name, env)
        return None if found is None else found[1]

    def place_of(self, name: str, env: dict[str, Any] | None = None) -> int:
        """Where series ``name`` goes among this plot's curves (its colour and legend place): by pattern, then
        by rank or device number, whatever order the series first arrive in."""
        found = self._match(name, env)
        return 0 if found is None else found[0]

    def _match(self, name: str, env: dict[str, Any] | None) -> tuple[int, str] | None:
        on_cuda = str((env or {}).get("device", "")).startswith("cuda")
        patterns = self.cpu_patterns if self.cpu_patterns and not on_cuda else self.patterns
        for i, (pattern, label) in enumerate(patterns):
            regex = self._compiled.get(pattern)
            if regex is None:
                regex = self._compiled[pattern] = re.compile("^" + re.escape(pattern).replace(r"\*", r"([^/]+)") + "$")
            m = regex.match(name)
            if m:
                number = next((int(g) for g in m.groups() if g.isdigit()), 0)
                return number * len(patterns) + i, label.format(*m.groups())
        return None


TRAINING: tuple[PlotSpec, ...] = (
    PlotSpec("loss", "Loss", (("metrics/loss", "train"), ("eval/val_loss", "val"), ("eval/val_loss_ema", "val EMA"))),
    PlotSpec("lr", "Learning rate", (("metrics/lr", "lr"), ("metrics/peak_lr", "peak")), smooth=False),
    PlotSpec(
        "grad_norm", "Grad norm", (("metrics/grad_norm", "before clip"), ("metrics/grad_norm_clipped", "after clip"))
    ),
    PlotSpec("tokens_per_s", "Throughput: tokens/s", (("metrics/tokens_per_s", "tokens/s"),)),
    PlotSpec("samples_per_s", "Throughput: samples/s", (("metrics/samples_per_s", "samples/s"),)),
    PlotSpec("step_time", "Step time (s)", (("metrics/step_time", "step time"),)),
    PlotSpec("data_wait", "Data wait (fraction of step)", (("metrics/data_wait_frac", "data wait"),)),
    PlotSpec("rank_work_time", "Own work per rank (s/step)", (("metrics/rank_work_times/*", "rank {}"),)),
)

SYSTEM: tuple[PlotSpec, ...] = (
    PlotSpec(
        "memory",
        "Memory per rank (MB)",
        (("system/rank*/gpu_mem_alloc_mb", "rank {} alloc"), ("system/rank*/gpu_mem_reserved_mb", "rank {} reserved")),
        cpu_patterns=(("system/rank*/rss_mb", "rank {} RSS"),),
    ),
    PlotSpec("host", "Host CPU and RAM (%)", (("system/host_cpu_percent", "CPU"), ("system/host_mem_percent", "RAM"))),
    PlotSpec("rank_cpu", "CPU per rank (%)", (("system/rank*/cpu_percent", "rank {}"),), optional=True),
    PlotSpec("gpu_util", "GPU utilisation (%)", (("system/gpu*/util", "GPU {}"),), optional=True),
    PlotSpec("gpu_mem", "GPU memory used (MB)", (("system/gpu*/mem_used_mb", "GPU {}"),), optional=True),
)

ALL_FIXED = TRAINING + SYSTEM


# Validation figures that are about the loss, the schedule or the pass itself, not the music.
NOT_MUSICAL_EVAL = frozenset(
    (
        "eval/val_loss",
        "eval/val_ppl",
        "eval/val_tokens",
        "eval/val_loss_ema",
        "eval/train_loss",
        "eval/lr_scale",
        "eval/seconds",
    )
)
# The engine's one-number summary: 1 = the samples are indistinguishable from the corpus.
QUALITY = "quality_score"


def is_musical(name: str) -> bool:
    return name.startswith("sample/") or (name.startswith("eval/") and name not in NOT_MUSICAL_EVAL)


def musical_spec(name: str) -> PlotSpec:
    """The plot of a musical series: one per metric, whether from samples or a validation pass."""
    metric = name.partition("/")[2]
    patterns = ((f"sample/{metric}", "samples"), (f"eval/{metric}", "validation"))
    if metric == QUALITY:
        # Defined so that the corpus scores 1: that is its reference.
        return PlotSpec(f"music:{metric}", "quality score", patterns, points=True, reference_level=1.0)
    return PlotSpec(f"music:{metric}", metric.replace("_", " "), patterns, points=True, reference=metric)
