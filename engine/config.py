"""Typed, validated run configuration. The schema below is the one source of defaults.

YAML in, a :class:`Config` out, or a :class:`ConfigError` whose lines each name
the field path, the bad value and what is allowed. Torch-free: the GUI's config
editor and new-run dialog use it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(_Section):
    seed: int = Field(1234, ge=0, description="Seed for weights, data order and augmentation; rank r uses seed + r where ranks must differ.")
    max_steps: int = Field(2000, ge=1, description="Optimizer steps to train for.")
    log_interval: int = Field(10, ge=1, description="Steps between metrics events; device values are read only then.")
    eval_interval: int = Field(200, ge=1, description="Steps between validation passes.")
    eval_max_batches: int = Field(0, ge=0, description="Validation micro-batches per rank per pass; 0 = the whole validation split.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available, else CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto = bf16 where the hardware supports it, else fp32.")
    threads_per_rank: Optional[int] = Field(None, ge=1, description="CPU threads per rank; default: cores / local ranks (oversubscribing is slow).")


class DataSection(_Section):
    source: Literal["bach", "midi_dir"] = Field("bach", description="bach = the chorales bundled with music21; midi_dir = your own folder of MIDI files (data.path).")
    path: Optional[str] = Field(None, description="Folder of .mid/.midi files, searched recursively; required when source is midi_dir.")
    max_pieces: Optional[int] = Field(None, ge=2, description="Use only the first N pieces (sorted by name); for quick trials.")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Fraction of pieces held out for validation (split by piece, deterministic).")
    split_seed: int = Field(0, ge=0, description="Seed of the train/validation split; fixed so runs compare on the same pieces.")
    seq_len: int = Field(256, ge=16, le=8192, multiple_of=8, description="Tokens per training window (multiple of 8).")
    transpose: int = Field(5, ge=0, le=12, description="Training windows are transposed by a random shift in [-transpose, +transpose] semitones, kept within the tokenizer's pitch range.")
    cache_dir: Optional[str] = Field(None, description="Where prepared (tokenised) data is cached; default ~/.cache/podium.")


class TokenizerSection(_Section):
    kind: Literal["REMI", "TSD", "MIDILike"] = Field("REMI", description="miditok tokenizer. REMI's Bar/Position tokens give the model the metric grid chorales are built on.")
    positions_per_beat: Literal[4, 8, 12, 16] = Field(8, description="Time resolution inside a beat.")
    pitch_low: int = Field(21, ge=0, le=127, description="Lowest pitch the vocabulary holds (MIDI number).")
    pitch_high: int = Field(108, ge=0, le=127, description="Highest pitch the vocabulary holds (MIDI number).")

    @model_validator(mode="after")
    def _pitch_order(self) -> "TokenizerSection":
        if self.pitch_low >= self.pitch_high:
            raise ValueError(f"pitch_low ({self.pitch_low}) must be below pitch_high ({self.pitch_high})")
        return self


class ModelSection(_Section):
    d_model: int = Field(256, ge=16, le=8192, multiple_of=8, description="Width of the transformer.")
    n_layers: int = Field(4, ge=1, le=128, description="Transformer blocks.")
    n_heads: int = Field(4, ge=1, le=128, description="Attention heads; must divide d_model.")
    ff_mult: int = Field(4, ge=1, le=16, description="Feed-forward width as a multiple of d_model.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on attention output and MLP.")

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelSection":
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        return self


class OptimSection(_Section):
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.1, ge=0.0, le=1.0, description="Decoupled weight decay on matrices (not on norms, biases or embeddings).")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0.0, lt=1.0, description="AdamW beta2.")
    warmup_steps: int = Field(100, ge=0, description="Linear warmup from 0 to the peak LR.")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warmup down to min_lr_ratio * lr.")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Final LR as a fraction of the peak.")
    grad_clip: float = Field(1.0, ge=0.0, description="Clip the global gradient norm to this; 0 turns clipping off.")


class BatchSection(_Section):
    global_batch_size: int = Field(32, ge=1, description="Sequences per optimizer step over all ranks.")
    micro_batch_size: int = Field(16, ge=1, description="Sequences per forward pass per rank; accumulation makes up the rest.")


class CheckpointSection(_Section):
    interval: int = Field(500, ge=0, description="Steps between checkpoints; 0 = only the final one.")
    keep_last: int = Field(3, ge=1, description="Newest full checkpoints to keep.")


class SampleSection(_Section):
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Softmax temperature when generating.")
    top_k: int = Field(0, ge=0, description="Sample from the k likeliest tokens; 0 = all.")
    max_tokens: int = Field(512, ge=8, le=65536, description="Tokens to generate per sample.")


class Config(_Section):
    run: RunSection = Field(default_factory=RunSection, description="Length, logging, device and precision.")
    data: DataSection = Field(default_factory=DataSection, description="Corpus, split, windows and augmentation.")
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection, description="How MIDI becomes tokens.")
    model: ModelSection = Field(default_factory=ModelSection, description="Decoder-only transformer size.")
    optim: OptimSection = Field(default_factory=OptimSection, description="AdamW, LR schedule and clipping.")
    batch: BatchSection = Field(default_factory=BatchSection, description="Global and per-rank batch sizes.")
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection, description="When to save and what to keep.")
    sample: SampleSection = Field(default_factory=SampleSection, description="Generation settings.")

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        if self.data.source == "midi_dir" and not self.data.path:
            raise ValueError("data.path is required when data.source is midi_dir (a folder of .mid files)")
        if self.batch.micro_batch_size > self.batch.global_batch_size:
            raise ValueError(
                f"batch.micro_batch_size ({self.batch.micro_batch_size}) exceeds batch.global_batch_size ({self.batch.global_batch_size})")
        return self

    def check_world_size(self, world_size: int) -> None:
        """The batch must split evenly over ranks and micro-batches."""
        per_rank, rest = divmod(self.batch.global_batch_size, world_size)
        if rest or per_rank == 0:
            raise ConfigError([f"batch.global_batch_size: {self.batch.global_batch_size} does not split over {world_size} ranks; use a multiple of {world_size}"])
        if per_rank % min(self.batch.micro_batch_size, per_rank):
            raise ConfigError([f"batch.micro_batch_size: {self.batch.micro_batch_size} does not divide the {per_rank} sequences per rank "
                               f"(global {self.batch.global_batch_size} / {world_size} ranks)"])

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` are one human-readable line each."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid config\n" + "\n".join(f"  - {p}" for p in problems))


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        section = _section_of(error["loc"][:-1])
        allowed = ", ".join(section.model_fields) if section else ""
        return f"{path}: unknown key; valid keys here: {allowed}"
    msg = error["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{path}: {msg}" if path else msg
    return f"{path}: {value!r} is not valid: {msg}"


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
        raise ConfigError([f"the top level must be a mapping of sections ({', '.join(Config.model_fields)}), not {type(data).__name__}"], source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()], source) from None


def parse_yaml(text: str, source: str | None = None) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{where}YAML syntax error: {getattr(exc, 'problem', None) or exc}"], source) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {item!r}: expected section.key=value, e.g. optim.lr=3e-4"])
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"--set {item!r}: {part} is not a section"])
            node = child
        node[parts[-1]] = parse_yaml(raw, f"--set {key}")
    return data


def load(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or the built-in default when None), apply overrides, validate."""
    path = Path(path) if path else default_config_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read config file: {exc.strerror}"], str(path)) from None
    data = parse_yaml(text, str(path))
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of sections, not {type(data).__name__}"], str(path))
    return validate(apply_overrides(data or {}, overrides or []), str(path))


def dump(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def defaults_yaml() -> str:
    """Every field with its default and its help text as a comment."""
    lines = ["# Podium configuration: every field, its default and what it does."]
    for section_name, section_field in Config.model_fields.items():
        section = section_field.annotation
        lines.append(f"\n# {section_field.description}")
        lines.append(f"{section_name}:")
        for name, field in section.model_fields.items():
            value = yaml.safe_dump(field.get_default(call_default_factory=True), default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"  {name}: {value}  # {field.description}")
    return "\n".join(lines) + "\n"


def resources_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "resources"


def default_config_path() -> Path:
    return resources_dir() / "default.yaml"
