"""Typed, validated run configuration. The schema below is the one source of defaults.

YAML in, a :class:`Config` out, or a :class:`ConfigError` whose lines each name
the field path, the bad value and what is allowed. Torch-free: the GUI's config
editor and new-run dialog use it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import stat
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from yaml.cyaml import CParser

from engine.contract.monitor_config import AnomalySection, MusicSection

MAX_SEED = 2**32 - 1  # numpy's np.random.seed range; rank r seeds with seed + r


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(_Section):
    seed: int = Field(
        1234,
        ge=0,
        le=MAX_SEED,
        description="Seed for weights, data order and augmentation; rank r uses seed + r where ranks must differ.",
    )
    max_steps: int = Field(2000, ge=1, description="Optimizer steps to train for.")
    log_interval: int = Field(10, ge=1, description="Steps between metrics events; device values are read only then.")
    eval_interval: int = Field(200, ge=1, description="Steps between validation passes.")
    eval_max_batches: int = Field(
        0, ge=0, description="Validation micro-batches per rank per pass; 0 = the whole validation split."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available, else CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 where the hardware supports it, else fp32."
    )
    threads_per_rank: int | None = Field(
        None, ge=1, description="CPU threads per rank; default: cores / local ranks (oversubscribing is slow)."
    )
    max_restarts: int = Field(
        0,
        ge=0,
        le=100,
        description=(
            "Times torchrun restarts the worker group after a rank dies; each restart resumes from the newest valid "
            "checkpoint. 0 = a dead rank ends the run (a crash that repeats would only repeat)."
        ),
    )


class DataSection(_Section):
    source: Literal["bach", "midi_dir"] = Field(
        "bach",
        description="bach = the chorales bundled with music21; midi_dir = your own folder of MIDI files (data.path).",
    )
    path: str | None = Field(
        None, description="Folder of .mid/.midi files, searched recursively; required when source is midi_dir."
    )
    max_pieces: int | None = Field(
        None, ge=2, description="Use only the first N pieces (sorted by name); for quick trials."
    )
    val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Fraction of pieces held out for validation (split by piece, deterministic)."
    )
    split_seed: int = Field(
        0, ge=0, description="Seed of the train/validation split; fixed so runs compare on the same pieces."
    )
    seq_len: int = Field(256, ge=16, le=8192, multiple_of=8, description="Tokens per training window (multiple of 8).")
    transpose: int = Field(
        5,
        ge=0,
        le=12,
        description=(
            "Training windows are transposed by a random shift in [-transpose, +transpose] semitones, kept within the "
            "tokenizer's pitch range."
        ),
    )
    cache_dir: str | None = Field(
        None, description="Where prepared (tokenised) data is cached; default ~/.cache/podium."
    )


class TokenizerSection(_Section):
    kind: Literal["REMI", "TSD", "MIDILike"] = Field(
        "REMI",
        description=(
            "miditok tokenizer. REMI's Bar/Position tokens give the model the metric grid chorales are built on."
        ),
    )
    positions_per_beat: Literal[4, 8, 12, 16] = Field(8, description="Time resolution inside a beat.")
    pitch_low: int = Field(21, ge=0, le=127, description="Lowest pitch the vocabulary holds (MIDI number).")
    pitch_high: int = Field(108, ge=0, le=127, description="Highest pitch the vocabulary holds (MIDI number).")

    @model_validator(mode="after")
    def _pitch_order(self) -> TokenizerSection:
        if self.pitch_low >= self.pitch_high:
            raise ValueError(f"pitch_low ({self.pitch_low}) must be below pitch_high ({self.pitch_high})")
        return self


class ModelSection(_Section):
    d_model: int = Field(256, ge=16, le=8192, multiple_of=8, description="Width of the transformer.")
    n_layers: int = Field(4, ge=1, le=128, description="Transformer blocks.")
    n_heads: int = Field(4, ge=1, le=128, description="Attention heads; must divide d_model.")
    ff_mult: int = Field(4, ge=1, le=16, description="Feed-forward width as a multiple of d_model.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on attention output and MLP.")
    activation_checkpointing: bool = Field(
        False, description="Recompute each block's activations in backward (non-reentrant): less memory, more compute."
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSection:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        return self


class OptimSection(_Section):
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(
        0.1, ge=0.0, le=1.0, description="Decoupled weight decay on matrices (not on norms, biases or embeddings)."
    )
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0.0, lt=1.0, description="AdamW beta2.")
    warmup_steps: int = Field(100, ge=0, description="Linear warmup from 0 to the peak LR.")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Decay after warmup down to min_lr_ratio * lr."
    )
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Final LR as a fraction of the peak.")


class BatchSection(_Section):
    # le: the trainer tries every divisor of the per-rank batch, so a huge one would never start.
    global_batch_size: int = Field(32, ge=1, le=2**20, description="Sequences per optimizer step over all ranks.")
    micro_batch_size: int | Literal["auto"] = Field(
        16,
        description=(
            "Sequences per forward pass per rank, or auto: the largest that fits the memory budget; accumulation makes"
            " up the rest."
        ),
    )
    micro_batch_min: int = Field(
        4, ge=1, description="Smallest micro-batch auto sizing and out-of-memory back-off may use."
    )
    micro_batch_max: int = Field(64, ge=1, description="Largest micro-batch auto sizing may choose.")
    memory_budget_mb: int | None = Field(
        None,
        ge=64,
        description=(
            "CPU: activation memory per rank for auto sizing (default: a quarter of free RAM / local ranks). GPU: "
            "ignored; a probe finds what fits."
        ),
    )

    @field_validator("micro_batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1 or auto")
        return value


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


class MonitorSection(_Section):
    system_interval_s: float = Field(
        5.0,
        ge=0.5,
        le=3600.0,
        description="Seconds between system samples (CPU, RSS, GPU memory, NVML), taken off the training thread.",
    )


class SinksSection(_Section):
    tensorboard: bool = Field(
        False, description="Mirror scalars into RUN_DIR/tensorboard (needs the tensorboard package)."
    )
    wandb: bool = Field(
        False, description="Mirror scalars into an offline W&B run in RUN_DIR/wandb (needs the wandb package)."
    )
    wandb_project: str = Field("podium", description="W&B project name for the offline run.")


class DebugSection(_Section):
    nan_loss_at_steps: list[int] = Field(
        default_factory=list, description="Make the loss NaN at these steps (tests recovery)."
    )
    inf_grad_at_steps: list[int] = Field(
        default_factory=list, description="Make one gradient infinite at these steps (tests fp16 step skipping)."
    )
    oom_at_steps: list[int] = Field(
        default_factory=list,
        description=(
            "Raise a simulated out-of-memory error on rank 0 at these steps while the micro-batch is above its minimum"
            " (tests back-off)."
        ),
    )
    slow_ranks_ms: dict[int, float] = Field(
        default_factory=dict,
        description=(
            "Sleep this many milliseconds in every forward pass of these ranks, e.g. {1: 30}: a simulated straggler (a"
            " host sleep: meant for CPU runs; on CUDA the device-timed check sees it only while the GPU has nothing "
            "queued)."
        ),
    )
    step_times: bool = Field(
        False,
        description=(
            "Record the wall-clock and process CPU time at the end of every step on rank 0 into "
            "RUN_DIR/step_times.json (for bench/overhead.py; costs about a microsecond per step)."
        ),
    )


class CheckpointSection(_Section):
    interval: int = Field(500, ge=0, description="Steps between checkpoints; 0 = only the final one.")
    keep_last: int = Field(3, ge=1, description="Newest full (resumable) checkpoints to keep.")
    keep_best: int = Field(
        1,
        ge=0,
        description=(
            "Also keep the best N checkpoints by best_metric (missing/NaN ranks worst, ties go to the earlier step); 0"
            " = none."
        ),
    )
    best_metric: str = Field(
        "val_loss",
        min_length=1,
        description=(
            "Metric that ranks checkpoints, as measured at their step; val_loss is computed at each save when no "
            "evaluation ran there."
        ),
    )
    best_mode: Literal["min", "max"] = Field("min", description="Whether a lower or a higher best_metric is better.")
    milestone_every: int = Field(
        0,
        ge=0,
        description="Also keep every checkpoint whose step is a multiple of this; 0 = none. A multiple of interval.",
    )
    archive: Literal["full", "weights"] = Field(
        "weights",
        description=(
            "What best and milestone checkpoints keep once they leave the newest keep_last: weights = the model only "
            "(optimizer and training state are about 2/3 of a checkpoint), full = everything."
        ),
    )
    weights_dtype: Literal["fp32", "fp16", "bf16"] = Field(
        "fp16",
        description=(
            "Precision of weights-only checkpoints (archived best/milestones). Measured on a trained model: fp16 "
            "halves them and moved validation loss by 2e-6 (bf16: 7e-5)."
        ),
    )
    compression: Literal["none", "zstd"] = Field(
        "none",
        description=(
            "Compress checkpoint files with zstd. Measured: full checkpoints shrink ~8% for 2-3x the save time, so it "
            "is off by default."
        ),
    )
    compression_level: int = Field(
        3, ge=1, le=19, description="zstd level when compression is zstd; higher is slower for little gain on weights."
    )
    max_age_hours: float | None = Field(
        None,
        gt=0,
        description=(
            "Remove checkpoints older than this, best and milestones included (never the newest full one or the one "
            "the run resumed from); none = no age limit."
        ),
    )
    async_save: bool = Field(
        True,
        description=(
            "Copy the state to CPU memory (pinned, for a GPU) and write it in a background thread while training goes "
            "on; the first log step after the write announces it (its checkpoint event, or its failure), and the next "
            "save waits for the previous one. Measured: training blocked 2% (GPU) to 7% (CPU) of an inline save's "
            "time. Command and final saves always wait."
        ),
    )
    on_error: Literal["continue", "stop"] = Field(
        "continue",
        description=(
            "When a save fails (disk full, any OS error): continue training and try again at the next save, or stop "
            "the run cleanly (reason failed). Earlier checkpoints stay intact either way."
        ),
    )

    @model_validator(mode="after")
    def _milestones_are_saved(self) -> CheckpointSection:
        if self.milestone_every and (not self.interval or self.milestone_every % self.interval):
            raise ValueError(
                f"milestone_every ({self.milestone_every}) must be a multiple of interval ({self.interval}), "
                "or milestones would fall on steps that are never saved"
            )
        return self


class SampleSection(_Section):
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Softmax temperature when generating.")
    top_k: int = Field(0, ge=0, description="Sample from the k likeliest tokens; 0 = all.")
    max_tokens: int = Field(512, ge=8, le=65536, description="Tokens to generate per sample.")
    constrained: bool = Field(
        True,
        description="Mask the tokens the REMI grammar does not allow at each point, so every sample is well-formed "
        "(REMI only).",
    )
    tempo_from: Literal["prompt", "corpus"] = Field(
        "prompt",
        description="Tempo written into a sample's MIDI: the prompt piece's (the corpus's when there is no prompt) "
        "or the corpus's median.",
    )


class Config(_Section):
    run: RunSection = Field(default_factory=RunSection, description="Length, logging, device and precision.")
    data: DataSection = Field(default_factory=DataSection, description="Corpus, split, windows and augmentation.")
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection, description="How MIDI becomes tokens.")
    model: ModelSection = Field(default_factory=ModelSection, description="Decoder-only transformer size.")
    optim: OptimSection = Field(default_factory=OptimSection, description="AdamW, LR schedule and clipping.")
    batch: BatchSection = Field(default_factory=BatchSection, description="Global and per-rank batch sizes.")
    checkpoint: CheckpointSection = Field(
        default_factory=CheckpointSection, description="When to save and what to keep."
    )
    sample: SampleSection = Field(default_factory=SampleSection, description="Generation settings.")
    clip: ClipSection = Field(default_factory=ClipSection, description="Gradient clipping.")
    plateau: PlateauSection = Field(
        default_factory=PlateauSection, description="Lower the LR when validation loss stops improving."
    )
    early_stop: EarlyStopSection = Field(
        default_factory=EarlyStopSection, description="Stop when the run stops improving or diverges."
    )
    curriculum: CurriculumSection = Field(
        default_factory=CurriculumSection, description="Short windows first, easy pieces first."
    )
    ema: EmaSection = Field(default_factory=EmaSection, description="Exponential moving average of the weights.")
    monitor: MonitorSection = Field(default_factory=MonitorSection, description="System metrics sampling.")
    anomaly: AnomalySection = Field(
        default_factory=AnomalySection, description="Anomaly detectors and the recovery action per kind."
    )
    music: MusicSection = Field(
        default_factory=MusicSection, description="Samples and musical quality metrics at evaluations."
    )
    sinks: SinksSection = Field(
        default_factory=SinksSection,
        description="Optional mirrors of the scalars (Podium's events stay the source of truth).",
    )
    debug: DebugSection = Field(
        default_factory=DebugSection,
        description="Fault injection for testing recovery paths, and per-step timing for benchmarks.",
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.data.source == "midi_dir" and not self.data.path:
            raise ValueError("data.path is required when data.source is midi_dir (a folder of .mid files)")
        for _, length in self.curriculum.seq_len_stages:
            if length > self.data.seq_len:
                raise ValueError(
                    f"curriculum.seq_len_stages: length {length} exceeds data.seq_len ({self.data.seq_len})"
                )
        if self.batch.micro_batch_min > self.batch.micro_batch_max:
            raise ValueError(
                f"batch.micro_batch_min ({self.batch.micro_batch_min}) exceeds batch.micro_batch_max "
                f"({self.batch.micro_batch_max})"
            )
        if isinstance(self.batch.micro_batch_size, int) and self.batch.micro_batch_size > self.batch.global_batch_size:
            raise ValueError(
                f"batch.micro_batch_size ({self.batch.micro_batch_size}) exceeds batch.global_batch_size "
                f"({self.batch.global_batch_size})"
            )
        return self

    def check_world_size(self, world_size: int) -> None:
        """The batch must split evenly over ranks and micro-batches."""
        if self.run.seed + world_size - 1 > MAX_SEED:
            raise ConfigError(
                [
                    f"run.seed: {self.run.seed} + rank must stay within 0..{MAX_SEED}; "
                    f"use at most {MAX_SEED - world_size + 1} with {world_size} ranks"
                ]
            )
        per_rank, rest = divmod(self.batch.global_batch_size, world_size)
        if rest or per_rank == 0:
            raise ConfigError(
                [
                    (
                        f"batch.global_batch_size: {self.batch.global_batch_size} does not split over {world_size} "
                        f"ranks; use a multiple of {world_size}"
                    )
                ]
            )
        if self.batch.micro_batch_size != "auto" and per_rank % min(self.batch.micro_batch_size, per_rank):
            raise ConfigError(
                [
                    f"batch.micro_batch_size: {self.batch.micro_batch_size} does not divide the {per_rank} "
                    f"sequences per rank (global {self.batch.global_batch_size} / {world_size} ranks)"
                ]
            )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` are one human-readable line each."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid config\n" + "\n".join(f"  - {p}" for p in problems))


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text)} characters)"


def _describe(error: dict[str, Any]) -> str:
    path = _shorten(".".join(str(p) for p in error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        section = _section_of(error["loc"][:-1])
        allowed = ", ".join(section.model_fields) if section else ""
        return f"{path}: unknown key; valid keys here: {allowed}"
    msg = _shorten(error["msg"], 300)
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{path}: {msg}" if path else msg
    return f"{path}: {_shorten(repr(error.get('input')))} is not valid: {msg}"


def _section_of(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def validate(data: Any, source: str | None = None) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                (
                    f"the top level must be a mapping of sections ({', '.join(Config.model_fields)}), not "
                    f"{type(data).__name__}"
                )
            ],
            source,
        )
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_describe(dict(e)) for e in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - MAX_PROBLEMS} more")
        raise ConfigError(problems, source) from None


MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 100
MAX_NODES = 10_000
MAX_INT_DIGITS = 30
MAX_PROBLEMS = 20
_PLAIN_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "str", "seq", "map")}
_KEY_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int"}  # int keys: debug.slow_ranks_ms maps ranks
_KEY_KINDS = {
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
}
_ALLOWED = "a config holds only text, numbers, booleans, null, lists and mappings"


class _Refused(yaml.MarkedYAMLError):  # type: ignore[misc]  # PyYAML ships no type information
    """YAML that is well-formed but outside what a config may hold."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem=problem, problem_mark=mark)


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


class _ConfigLoader(  # PyYAML ships no type information
    yaml.composer.Composer,  # type: ignore[misc]
    CParser,  # type: ignore[misc]
    yaml.constructor.SafeConstructor,  # type: ignore[misc]
    yaml.resolver.Resolver,  # type: ignore[misc]
):
    """A safe loader that builds only JSON-like data, with limits checked while composing, before any work.

    libyaml scans and parses (linear time; PyYAML's Python scanner is quadratic in flow nesting); composing
    stays in Python to check as it goes: depth on the way down, so deep nesting never reaches recursion,
    and the node count with each alias counted at every use, since the shared nodes later expand into
    copies (deep copy, validation) and a "billion laughs" would expand into billions. An alias to a node
    still being composed is a cycle.
    """

    yaml_constructors = {tag: f for tag, f in yaml.SafeLoader.yaml_constructors.items() if tag in _PLAIN_TAGS}

    def __init__(self, stream: str):
        CParser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._expanded = 0  # values the document expands to so far
        self._sizes: dict[int, int] = {}  # id(node) -> values it expands to; set once it is complete

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:
                if id(node) not in self._sizes:
                    raise _Refused(
                        f"alias *{event.anchor} refers to a node that contains it (a recursive alias)",
                        event.start_mark,
                    )
                self._count(self._sizes[id(node)], event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, node.start_mark)
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._expanded += values
        if self._expanded > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} values (an alias counts its values at each use)", mark)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if not isinstance(node, yaml.MappingNode):  # !!map on a scalar or a list
            raise _Refused(f"{_tag_name(node.tag)} needs a mapping", node.start_mark)
        self.flatten_mapping(node)
        for key_node, _ in node.value:
            if key_node.tag not in _KEY_TAGS:
                what = _KEY_KINDS.get(key_node.tag) or _shorten(_tag_name(key_node.tag))
                if not isinstance(key_node, yaml.ScalarNode):
                    what = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
                raise _Refused(f"a key must be text, not {what} (quote it)", key_node.start_mark)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> Any:
        text = self.construct_scalar(node)
        digits = len(text.replace("_", "").lstrip("+-"))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"an integer of {digits} digits; at most {MAX_INT_DIGITS} are allowed", node.start_mark)
        return self._converted(super().construct_yaml_int, node, "integer")

    def construct_yaml_float(self, node: Any) -> Any:
        return self._converted(super().construct_yaml_float, node, "number")

    def construct_yaml_bool(self, node: Any) -> Any:
        return self._converted(super().construct_yaml_bool, node, "boolean")

    def _converted(self, construct: Any, node: Any, kind: str) -> Any:
        try:
            return construct(node)
        except (ValueError, KeyError, IndexError):  # an explicit tag on text that is not of that kind: !!int abc
            raise _Refused(f"{_shorten(repr(node.value))} is not a valid {kind}", node.start_mark) from None

    def construct_refused(self, node: Any) -> Any:
        if node.tag == "tag:yaml.org,2002:timestamp":
            problem = f"{_shorten(node.value)} reads as a date; quote it to use it as text ({_ALLOWED})"
            raise _Refused(problem, node.start_mark)
        raise _Refused(f"{_shorten(_tag_name(node.tag))} is not allowed; {_ALLOWED}", node.start_mark)


_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _ConfigLoader.construct_yaml_int)
_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _ConfigLoader.construct_yaml_float)
_ConfigLoader.add_constructor("tag:yaml.org,2002:bool", _ConfigLoader.construct_yaml_bool)
_ConfigLoader.add_constructor(None, _ConfigLoader.construct_refused)


def parse_yaml(text: str, source: str | None = None) -> Any:
    """YAML text to plain data, or a ConfigError naming the line; see _ConfigLoader for what is refused."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate, as from an undecodable command-line byte
        line = text.count("\n", 0, exc.start) + 1
        raise ConfigError([f"line {line}: {text[exc.start]!r} is not a Unicode character"], source) from None
    try:
        loader = _ConfigLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _Refused as exc:
        mark = exc.problem_mark
        raise ConfigError([f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"], source) from None
    except yaml.reader.ReaderError as exc:  # exc.position: a byte offset into the UTF-8 text
        line = text.encode().count(b"\n", 0, exc.position) + 1
        raise ConfigError(
            [f"line {line}: character {exc.character!r} is not allowed in YAML ({exc.reason})"], source
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{where}YAML syntax error: {getattr(exc, 'problem', None) or exc}"], source) from None


def read_text(path: Path) -> str:
    """A regular file's text, refused before reading when it is not one (a FIFO would block) or too large."""
    source = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(["not a regular file (a folder, pipe or device); give a YAML file"], source)
        # O_NONBLOCK: should the path turn into a FIFO after the check, opening it must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError(["not a regular file (a folder, pipe or device); give a YAML file"], source)
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"cannot read config file: {exc.strerror}"], source) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a short YAML file"], source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"line {line}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"], source
        ) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {_shorten(repr(item))}: expected section.key=value, e.g. optim.lr=3e-4"])
        node = data
        parts = key.strip().split(".")
        if len(parts) > MAX_DEPTH:
            raise ConfigError([f"--set {_shorten(item)}: nested deeper than {MAX_DEPTH} levels"])
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"--set {_shorten(repr(item))}: {_shorten(part)} is not a section"])
            node = child
        node[parts[-1]] = parse_yaml(raw, f"--set {_shorten(key)}")
    return data


def load(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or the built-in default when None), apply overrides, validate."""
    path = Path(path) if path else default_config_path()
    data = parse_yaml(read_text(path), str(path))
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of sections, not {type(data).__name__}"], str(path))
    return validate(apply_overrides(data or {}, overrides or []), str(path))


def dump(config: Config) -> str:
    return str(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def defaults_yaml() -> str:
    """Every field with its default and its help text as a comment."""
    lines = ["# Podium configuration: every field, its default and what it does."]
    defaults = Config().model_dump(mode="json")
    for section_name, section_field in Config.model_fields.items():
        section = cast(type[BaseModel], section_field.annotation)  # every section is a model
        lines.append(f"\n# {section_field.description}")
        lines.append(f"{section_name}:")
        for name, field in section.model_fields.items():
            value = yaml.safe_dump(defaults[section_name][name], default_flow_style=True, width=1000).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"  {name}: {value}  # {field.description}")
    return "\n".join(lines) + "\n"


def resources_dir() -> Path:
    """The shipped configs and style sheets: the ``resources`` package, in a checkout or an installed wheel."""
    # pip installs wheels unpacked, so the package is a real folder that subprocesses and file dialogs can use.
    return Path(str(importlib.resources.files("resources")))


def default_config_path() -> Path:
    return resources_dir() / "default.yaml"
