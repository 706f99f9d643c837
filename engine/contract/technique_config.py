"""Config sections of the training techniques: gradient clipping (``clip:``), LR on plateau
(``plateau:``), early stopping (``early_stop:``), curricula (``curriculum:``) and the weight EMA
(``ema:``).

Torch-free, in the style of :mod:`engine.contract.config`: unknown keys are refused and every field
has a description and a range.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClipSection(_Section):
    method: Literal["none", "fixed", "autoclip", "ratio", "agc"] = Field(
        "fixed",
        description=(
            "fixed = global norm; autoclip = percentile of recent norms (Seetharaman 2020); ratio = multiple of the "
            "norm's moving average (OLMo); agc = unit-wise adaptive clipping (Brock 2021)."
        ),
    )
    max_norm: float = Field(
        1.0, ge=0.0, description="Global-norm limit (fixed), and an upper bound for autoclip/ratio; 0 = none."
    )
    percentile: float = Field(
        10.0, gt=0.0, le=100.0, description="autoclip: percentile of the recent norms to clip to."
    )
    window: int = Field(1000, ge=10, le=100000, description="autoclip: how many recent norms to remember.")
    ratio: float = Field(2.0, gt=1.0, description="ratio: clip to this multiple of the norm's moving average.")
    ema_beta: float = Field(0.99, gt=0.0, lt=1.0, description="ratio: smoothing of the moving average.")
    agc_lambda: float = Field(0.01, gt=0.0, description="agc: largest allowed ||grad|| / ||weight|| per unit.")
    warmup_steps: int = Field(
        10, ge=0, description="autoclip/ratio: steps of history before adapting (max_norm applies meanwhile)."
    )


class PlateauSection(_Section):
    enabled: bool = Field(False, description="ReduceLROnPlateau on validation loss (averaged over ranks).")
    patience: int = Field(3, ge=1, description="Evaluations without improvement before the LR drops.")
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="Multiply the LR by this on a plateau.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest decrease that counts as an improvement.")
    min_scale: float = Field(1e-3, gt=0.0, le=1.0, description="Never scale the LR below this fraction.")


class MonitorSpec(_Section):
    metric: str = Field("val_loss", description="A field of eval events: val_loss, quality_score, ...")
    mode: Literal["min", "max"] = Field("min", description="Whether lower or higher is better.")
    patience: int = Field(5, ge=1, description="Evaluations without improvement before this metric votes to stop.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as an improvement.")


class EarlyStopSection(_Section):
    enabled: bool = Field(False, description="Stop early when every monitored metric has stopped improving.")
    monitors: list[MonitorSpec] = Field(
        default_factory=lambda: [MonitorSpec()], description="Metrics to watch; all must run out of patience."
    )
    divergence_factor: float = Field(
        0.0, ge=0.0, description="Stop when the training loss exceeds this multiple of its best; 0 = off."
    )
    stop_on_nonfinite: bool = Field(True, description="Stop when the training loss is NaN or infinite.")


class CurriculumSection(_Section):
    seq_len_stages: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[[start, length], ...]: window length by stage (multiples of 8, up to data.seq_len); empty = off.",
    )
    unit: Literal["steps", "tokens"] = Field(
        "steps", description="What the seq_len stage starts count; LR decay counts tokens while this curriculum is on."
    )
    difficulty_stages: list[tuple[int, float]] = Field(
        default_factory=list,
        description=(
            "[[start_step, fraction], ...]: train on the easiest fraction of pieces (notes per bar x voices) by stage;"
            " empty = off."
        ),
    )

    @model_validator(mode="after")
    def _stages(self) -> CurriculumSection:
        for name, stages in (("seq_len_stages", self.seq_len_stages), ("difficulty_stages", self.difficulty_stages)):
            if stages and sorted(stages)[0][0] != 0:
                raise ValueError(f"curriculum.{name}: the first stage must start at 0, got {sorted(stages)[0][0]}")
        for _, length in self.seq_len_stages:
            if length < 8 or length % 8:
                raise ValueError(f"curriculum.seq_len_stages: length {length} must be a multiple of 8 (>= 8)")
        for _, fraction in self.difficulty_stages:
            if not 0 < fraction <= 1:
                raise ValueError(f"curriculum.difficulty_stages: fraction {fraction} must be in (0, 1]")
        return self


class EmaSection(_Section):
    enabled: bool = Field(
        False,
        description=(
            "Keep an exponential moving average of the weights, evaluated next to the raw ones and saved in "
            "checkpoints."
        ),
    )
    decay: float = Field(0.999, gt=0.0, lt=1.0, description="EMA decay per step.")
