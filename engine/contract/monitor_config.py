"""Config sections for anomaly detection (``anomaly:``) and musical-quality sampling (``music:``).

Torch-free, like :mod:`engine.contract.config`, whose ``_Section`` style these follow:
unknown keys are refused, every field has a description and a range, and the
schema is the one source of defaults. The anomaly kinds and recovery actions
are defined here, as data, so the schema can validate a policy override and
:mod:`engine.monitoring.anomaly` and the GUI can list them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KINDS: tuple[str, ...] = (
    "nonfinite_loss",
    "nonfinite_grad",
    "loss_spike",
    "loss_divergence",
    "grad_explosion",
    "vanishing_gradients",
    "lr_anomaly",
    "throughput_drop",
    "stalled_training",
    "memory_growth",
    "gpu_memory_near_limit",
    "overfitting",
    "dataloader_bottleneck",
    "straggler_rank",
    "musical_collapse",
    "memorization",
)

ACTIONS: tuple[str, ...] = ("alert", "skip_batch", "lower_lr", "rollback", "pause", "stop")

# Detectors see values at log steps, after the optimizer has applied the
# updates they describe, so the actions that can still help are those that
# undo or slow training: non-finite values and divergence mean the weights may
# already be poisoned, hence rollback. A loss spike that recovers needs no
# action and one that does not becomes a divergence, so spikes only alert
# (skip_batch would come too late: the batch is long applied). Everything else
# is for a person to judge.
DEFAULT_ACTIONS: dict[str, str] = {kind: "alert" for kind in KINDS} | {
    "nonfinite_loss": "rollback",
    "nonfinite_grad": "rollback",
    "loss_divergence": "rollback",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AnomalySection(_Section):
    enabled: bool = Field(True, description="Run the anomaly detectors at log steps, evaluations and system samples.")
    cooldown_steps: int = Field(
        100,
        ge=0,
        description="After a kind fires, it stays quiet for this many steps unless it comes back more severe.",
    )
    policy: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Recovery action per anomaly kind, overriding the defaults (rollback for non-finite values and divergence,"
            " alert otherwise). Actions: alert, skip_batch, lower_lr, rollback, pause, stop."
        ),
    )
    disabled: list[str] = Field(default_factory=list, description="Anomaly kinds not to detect at all.")
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0, description="lower_lr multiplies the learning rate by this.")
    rollback_lowers_lr: bool = Field(
        True,
        description=(
            "A rollback also multiplies the LR by lr_factor: a run that blew up at an LR usually does so again at the "
            "same place."
        ),
    )

    spike_window: int = Field(
        50,
        ge=5,
        le=10000,
        description="loss_spike: log steps whose loss-to-loss differences measure the noise (robustly, with the MAD).",
    )
    spike_min_history: int = Field(20, ge=6, le=10000, description="loss_spike: log steps needed before it can fire.")
    spike_z: float = Field(
        8.0,
        gt=0.0,
        description=(
            "loss_spike: how many noise standard deviations above the recent level (median of the last 5 log steps) "
            "make a spike."
        ),
    )
    spike_min_rel: float = Field(
        0.1,
        ge=0.0,
        description=(
            "loss_spike: the loss must also exceed the recent level by this fraction, so a flat, quiet curve does not "
            "turn noise into spikes."
        ),
    )

    divergence_ema: float = Field(
        0.1, gt=0.0, le=1.0, description="loss_divergence: weight of the newest loss in the exponential moving average."
    )
    divergence_rel: float = Field(
        0.25, gt=0.0, description="loss_divergence: fires when the loss EMA stays this fraction above its best."
    )
    divergence_patience: int = Field(
        5, ge=1, description="loss_divergence: consecutive log steps the EMA must stay above the bound."
    )
    divergence_min_history: int = Field(10, ge=1, description="loss_divergence: log steps needed before it can fire.")

    grad_window: int = Field(50, ge=5, description="grad_explosion: log steps in the rolling window of gradient norms.")
    grad_min_history: int = Field(
        10, ge=3, description="grad_explosion: log steps needed before the relative test can fire."
    )
    grad_explosion_factor: float = Field(
        10.0,
        gt=1.0,
        description="grad_explosion: fires when the gradient norm exceeds this multiple of the window's median.",
    )
    grad_norm_max: float | None = Field(
        None,
        gt=0.0,
        description=(
            "grad_explosion: absolute gradient-norm limit, checked from the first step; None = relative test only."
        ),
    )
    vanishing_grad_norm: float = Field(
        1e-6, ge=0.0, description="vanishing_gradients: gradient norms at or below this count as vanished."
    )
    vanishing_patience: int = Field(
        3, ge=1, description="vanishing_gradients: consecutive log steps at or below the limit."
    )

    lr_max_jump: float = Field(
        3.0,
        gt=1.0,
        description=(
            "lr_anomaly: an LR rise by more than this factor between log steps, not announced by a set_lr or resume, "
            "is an anomaly."
        ),
    )
    lr_zero_patience: int = Field(
        3,
        ge=1,
        description=(
            "lr_anomaly: consecutive log steps at LR 0 (after it was positive, or from the start) before it fires; "
            "warmup and a decay to 0 touch 0 once."
        ),
    )

    throughput_window: int = Field(
        20, ge=3, description="throughput_drop: log steps in the rolling window of tokens/s."
    )
    throughput_min_history: int = Field(5, ge=2, description="throughput_drop: log steps needed before it can fire.")
    throughput_drop_frac: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="throughput_drop: fires when tokens/s falls below this fraction of the window's median.",
    )
    throughput_patience: int = Field(
        2,
        ge=1,
        description="throughput_drop: consecutive slow log steps (one slow interval is often a checkpoint or an eval).",
    )

    stall_timeout_s: float = Field(
        300.0, gt=0.0, description="stalled_training: seconds without a finished step before the watchdog fires."
    )
    stall_startup_timeout_s: float = Field(
        900.0,
        gt=0.0,
        description="stalled_training: allowance for the first step (compilation, data loading, NCCL set-up).",
    )

    memory_window: int = Field(20, ge=5, description="memory_growth: system samples in the regression window.")
    memory_min_growth_mb: float = Field(
        256.0,
        ge=0.0,
        description=(
            "memory_growth: the fitted growth over the window must exceed this many MB (and memory_min_growth_frac)."
        ),
    )
    memory_min_growth_frac: float = Field(
        0.1,
        ge=0.0,
        description=(
            "memory_growth: the fitted growth over the window must exceed this fraction of the fitted starting value "
            "(and memory_min_growth_mb)."
        ),
    )
    memory_min_r2: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="memory_growth: the trend must explain this much of the variance (R^2): a leak climbs steadily.",
    )
    memory_warmup_steps: int = Field(
        100,
        ge=0,
        description="memory_growth: samples before this step are ignored; allocators and caches fill up first.",
    )

    gpu_mem_warn_frac: float = Field(
        0.92,
        gt=0.0,
        le=1.0,
        description=(
            "gpu_memory_near_limit: warning above this fraction of the GPU's memory (highest of "
            "allocated/reserved/peak)."
        ),
    )
    gpu_mem_critical_frac: float = Field(
        0.98, gt=0.0, le=1.0, description="gpu_memory_near_limit: critical above this fraction."
    )

    overfit_patience: int = Field(
        3,
        ge=1,
        description=(
            "overfitting: consecutive evaluations in which the validation-training gap grew while validation loss was "
            "above its best."
        ),
    )
    overfit_min_rise: float = Field(
        0.02,
        ge=0.0,
        description=(
            "overfitting: the validation loss must also be this fraction above its best when it fires, so a noisy "
            "plateau is not called overfitting."
        ),
    )

    data_wait_frac: float = Field(
        0.3,
        gt=0.0,
        lt=1.0,
        description=(
            "dataloader_bottleneck: fraction of step time spent waiting for data above which the loader is the "
            "bottleneck."
        ),
    )
    data_wait_patience: int = Field(
        3, ge=1, description="dataloader_bottleneck: consecutive log steps above the fraction."
    )

    straggler_ratio: float = Field(
        1.5,
        gt=1.0,
        description=(
            "straggler_rank: fires when the slowest rank's own work time per step (data and forward passes) exceeds "
            "the median of the others by this factor."
        ),
    )
    straggler_patience: int = Field(
        3, ge=1, description="straggler_rank: consecutive log steps with the same slowest rank."
    )
    straggler_min_steps: int = Field(
        30,
        ge=0,
        description=(
            "straggler_rank: and that for at least this many training steps (a slow rank persists; a few short steps "
            "on a busy host do not make one)."
        ),
    )
    scaler_skip_patience: int = Field(
        3,
        ge=1,
        description=(
            "nonfinite_grad under fp16: consecutive log steps in which the loss scaler skipped every step (a single "
            "skip is routine)."
        ),
    )

    collapse_max_repetition: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="musical_collapse: mean bar-repetition rate of the samples above which they are looping.",
    )
    collapse_min_entropy: float = Field(
        1.5, ge=0.0, le=3.6, description="musical_collapse: pitch-class entropy floor in bits (chorales sit near 2.9)."
    )
    collapse_entropy_z: float = Field(
        3.0,
        gt=0.0,
        description="musical_collapse: with a reference, the floor rises to reference mean - this many reference std.",
    )
    memorization_max_share: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="memorization: mean share of the samples' 2-bar passages found in the training set above "
        "which they are copies.",
    )

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, action in value.items():
            if kind not in KINDS:
                raise ValueError(f"unknown anomaly kind {kind!r}; kinds: {', '.join(KINDS)}")
            if action not in ACTIONS:
                raise ValueError(f"{kind}: unknown action {action!r}; actions: {', '.join(ACTIONS)}")
        return value

    @field_validator("disabled")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = [k for k in value if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown anomaly kind(s) {', '.join(map(repr, unknown))}; kinds: {', '.join(KINDS)}")
        return value

    @model_validator(mode="after")
    def _ordered_limits(self) -> AnomalySection:
        if self.gpu_mem_warn_frac > self.gpu_mem_critical_frac:
            raise ValueError(
                f"gpu_mem_warn_frac ({self.gpu_mem_warn_frac}) must not exceed gpu_mem_critical_frac "
                f"({self.gpu_mem_critical_frac})"
            )
        if self.spike_min_history > self.spike_window:
            raise ValueError(
                f"spike_min_history ({self.spike_min_history}) must not exceed spike_window ({self.spike_window})"
            )
        if self.grad_min_history > self.grad_window:
            raise ValueError(
                f"grad_min_history ({self.grad_min_history}) must not exceed grad_window ({self.grad_window})"
            )
        if self.throughput_min_history > self.throughput_window:
            raise ValueError(
                f"throughput_min_history ({self.throughput_min_history}) must not exceed throughput_window "
                f"({self.throughput_window})"
            )
        return self


class MusicSection(_Section):
    enabled: bool = Field(True, description="Generate samples and compute musical metrics at evaluations.")
    every_n_evals: int = Field(
        1, ge=1, description="Sample at every n-th evaluation (sampling costs more than the validation pass on CPU)."
    )
    num_samples: int = Field(4, ge=1, le=64, description="Samples generated per evaluation.")
    seeds: list[int] | None = Field(
        None,
        description=(
            "One seed per sample, fixed so samples compare across evaluations; None = 0, 1, ..., num_samples - 1."
        ),
    )
    sample_tokens: int | None = Field(
        None, ge=16, le=65536, description="Tokens generated per sample; None = sample.max_tokens."
    )
    prompt_from_validation: bool = Field(
        False, description="Start each sample from the opening of a validation piece instead of from nothing."
    )
    prompt_bars: int = Field(2, ge=1, le=64, description="Bars of the validation piece used as the prompt.")
    reference_window_beats: float | None = Field(
        32.0,
        gt=0.0,
        description=(
            "Reference metrics are measured on the windows of this many beats (whole bars) that each validation "
            "piece fills, and a sample's on its first such window, because pitch range and pitches used grow with "
            "length; None = whole pieces and whole samples."
        ),
    )

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 0 <= s < 2**64 for s in value):  # torch.Generator.manual_seed's range
            raise ValueError(f"every seed must be in 0..2**64-1, got {value}")
        return value

    @model_validator(mode="after")
    def _one_seed_per_sample(self) -> MusicSection:
        if self.seeds is not None and len(self.seeds) != self.num_samples:
            raise ValueError(
                f"seeds has {len(self.seeds)} entries but num_samples is {self.num_samples}; give one seed per sample"
            )
        return self

    def sample_seeds(self) -> list[int]:
        """The seed of each sample."""
        return list(self.seeds) if self.seeds is not None else list(range(self.num_samples))
