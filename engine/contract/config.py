"""Typed, validated run configuration. The schema below (with the sections of ``technique_config``,
``checkpoint_config`` and ``monitor_config``) is the one source of defaults; YAML is read by
``safe_yaml``.

YAML in, a :class:`Config` out, or a :class:`ConfigError` whose lines each name
the field path, the bad value and what is allowed. Torch-free: the GUI's config
editor and new-run dialog use it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.contract.checkpoint_config import CheckpointSection as CheckpointSection
from engine.contract.monitor_config import AnomalySection, MusicSection
from engine.contract.safe_yaml import MAX_DEPTH, shorten
from engine.contract.safe_yaml import ConfigError as ConfigError
from engine.contract.safe_yaml import parse_yaml as parse_yaml
from engine.contract.safe_yaml import read_text as read_text
from engine.contract.technique_config import ClipSection as ClipSection
from engine.contract.technique_config import CurriculumSection as CurriculumSection
from engine.contract.technique_config import EarlyStopSection as EarlyStopSection
from engine.contract.technique_config import EmaSection as EmaSection
from engine.contract.technique_config import MonitorSpec as MonitorSpec
from engine.contract.technique_config import PlateauSection as PlateauSection

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


class SampleSection(_Section):
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Softmax temperature when generating.")
    top_k: int = Field(0, ge=0, description="Sample from the k likeliest tokens; 0 = all.")
    top_p: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Sample from the fewest likeliest tokens (of those the grammar allows) whose probabilities "
        "add up to top_p; 1 = all.",
    )
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


def _describe(error: dict[str, Any]) -> str:
    path = shorten(".".join(str(p) for p in error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        section = _section_of(error["loc"][:-1])
        allowed = ", ".join(section.model_fields) if section else ""
        return f"{path}: unknown key; valid keys here: {allowed}"
    msg = shorten(error["msg"], 300)
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{path}: {msg}" if path else msg
    return f"{path}: {shorten(repr(error.get('input')))} is not valid: {msg}"


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


MAX_PROBLEMS = 20


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {shorten(repr(item))}: expected section.key=value, e.g. optim.lr=3e-4"])
        node = data
        parts = key.strip().split(".")
        if len(parts) > MAX_DEPTH:
            raise ConfigError([f"--set {shorten(item)}: nested deeper than {MAX_DEPTH} levels"])
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"--set {shorten(repr(item))}: {shorten(part)} is not a section"])
            node = child
        node[parts[-1]] = parse_yaml(raw, f"--set {shorten(key)}")
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
