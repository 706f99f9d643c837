"""Search spaces for hyperparameter studies: parse, validate, enumerate.

A space file maps config fields (``section.key``, as in ``--set``) to how a
study varies them::

    optim.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
    model.n_layers: {type: int, low: 1, high: 4}
    model.dropout: {type: float, low: 0.0, high: 0.3, step: 0.1}
    tokenizer.kind: {type: categorical, choices: [REMI, TSD]}

The nested form (``optim: {lr: {type: ...}}``) is accepted too. Everything is
checked before a study runs anything: the key must be a field of the config
schema, the kind must suit the field (no float range on an integer field),
and the base config must accept each end of a range and every choice. Each
problem names the line and the key.

Torch-free and Optuna-free: the GUI's space editor validates as you type.
"""

from __future__ import annotations

import itertools
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel

from engine.contract import config as config_mod
from engine.contract.commandline import UsageError

KINDS = ("float", "int", "categorical")
FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# A grid bigger than this is not enumerated for validation (nor would anyone run it).
MAX_GRID_CHECK = 10_000


@dataclass(frozen=True)
class Param:
    """One dimension of the space. ``name`` is the config path, e.g. ``optim.lr``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    line: int | None = None

    def grid_values(self) -> list[Any] | None:
        """The values a grid search visits, or None when the range is continuous."""
        if self.kind == "categorical":
            return list(self.choices)
        low, high = self.low, self.high
        assert low is not None and high is not None, "a numeric parameter always has its range"
        if self.kind == "int":
            return list(range(int(low), int(high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        step = self.step
        count = int(round((high - low) / step))
        return [_clean_float(low + i * step) for i in range(count + 1)]

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(map(str, self.choices))
        extra = ", log scale" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.kind} in [{self.low:g}, {self.high:g}]{extra}"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, stored with the study so a resumed study can tell a changed space."""
        return {p.name: p.to_dict() for p in self.params}

    def grid(self) -> dict[str, list[Any]] | None:
        """Per-parameter grid values, or None when some parameter is continuous."""
        values = {p.name: p.grid_values() for p in self.params}
        grid = {name: v for name, v in values.items() if v is not None}
        return grid if len(grid) == len(values) else None

    def grid_size(self) -> int | None:
        grid = self.grid()
        return None if grid is None else math.prod(len(v) for v in grid.values())


class SpaceError(UsageError):
    """An invalid space file; ``problems`` are one line each (line number and key first)."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid search space\n" + "\n".join(f"  - {p}" for p in problems))


def overrides(params: dict[str, Any]) -> list[str]:
    """``--set`` strings for sampled values, written so the config's YAML parser reads them back exactly."""
    return [f"{name}={yaml_scalar(value)}" for name, value in params.items()]


def yaml_scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        text = repr(value)
        # YAML 1.1 (PyYAML) reads "1e-05" as a string: a float needs a dot and a signed exponent.
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, int):
        return str(value)
    return str(yaml.safe_dump(str(value), default_style='"')).strip()


def load(
    path: str | os.PathLike[str], base: dict[str, Any] | None = None, nproc: int = 1, sampler: str | None = None
) -> Space:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError([f"cannot read the space file: {exc.strerror}"], str(path)) from None
    return parse(text, base, nproc=nproc, sampler=sampler, source=str(path))


def parse(
    text: str, base: dict[str, Any] | None = None, nproc: int = 1, sampler: str | None = None, source: str | None = None
) -> Space:
    """Parse and validate a space against ``base`` (plain config data; None = the defaults).

    ``nproc`` checks batch sizes split over the ranks; ``sampler="grid"``
    also requires every parameter to be discrete and every grid point to be
    a valid config.
    """
    entries, problems = _entries(text, source)
    params: list[Param] = []
    for name, spec, line in entries:
        param, errors = _param(name, spec, line)
        problems += errors
        if param is not None:
            params.append(param)
    if not entries and not problems:
        problems.append(
            "the space is empty; add at least one parameter, e.g. optim.lr: {type: float, low: 1.0e-4, high: "
            "1.0e-2, log: true}"
        )
    if problems:
        raise SpaceError(problems, source)
    base = base or {}
    for param in params:
        problems += _check_against_config(param, base, nproc)
    space = Space(tuple(params))
    if not problems and sampler == "grid":
        problems += _check_grid(space, base, nproc)
    if problems:
        raise SpaceError(problems, source)
    return space


def _at(line: int | None, name: str) -> str:
    return f"line {line}, {name}" if line else name


def _entries(text: str, source: str | None) -> tuple[list[tuple[str, Any, int]], list[str]]:
    """(dotted key, raw spec, line) for each parameter, flattening the nested form."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return [], [f"{where}YAML syntax error: {getattr(exc, 'problem', None) or exc}"]
    if root is None:
        return [], []
    if not isinstance(root, yaml.MappingNode):
        return [], ["the top level must be a mapping of config keys (section.key) to parameter specs"]
    entries: list[tuple[str, Any, int]] = []
    problems: list[str] = []
    for key_node, value_node in root.value:
        key, line = str(_construct(key_node)), key_node.start_mark.line + 1
        value = _construct(value_node)
        is_section = "." not in key and isinstance(value_node, yaml.MappingNode) and "type" not in (value or {})
        if is_section:
            for sub_key, sub_value in value_node.value:
                entries.append((f"{key}.{_construct(sub_key)}", _construct(sub_value), sub_key.start_mark.line + 1))
        else:
            entries.append((key, value, line))
    seen: dict[str, int] = {}
    for name, _, line in entries:
        if name in seen:
            problems.append(f"{_at(line, name)}: given twice (first on line {seen[name]})")
        seen.setdefault(name, line)
    return entries, problems


def _construct(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _param(name: str, spec: Any, line: int) -> tuple[Param | None, list[str]]:
    where = _at(line, name)
    field, why = schema_field(name)
    if field is None:
        return None, [f"{where}: {why}"]
    if not isinstance(spec, dict):
        return None, [
            f"{where}: expected a mapping such as {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}, not {spec!r}"
        ]
    kind = spec.get("type")
    if kind not in KINDS:
        return None, [f"{where}: type {kind!r} is not valid; use one of {', '.join(KINDS)}"]
    unknown = set(spec) - FIELDS[kind]
    if unknown:
        return None, [
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} for type {kind}; "
            f"allowed: {', '.join(sorted(FIELDS[kind] - {'type'}))}"
        ]
    if kind == "categorical":
        return _categorical(name, spec, line, field)
    return _numeric(name, kind, spec, line, field)


def _categorical(name: str, spec: dict[str, Any], line: int, field: Any) -> tuple[Param | None, list[str]]:
    where = _at(line, name)
    choices = spec.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        return None, [
            f"{where}: choices must be a list of at least two values (one value is a fixed "
            f"setting: put it in the base config or pass --set)"
        ]
    if any(not (c is None or isinstance(c, (str, int, float, bool))) for c in choices):
        return None, [f"{where}: choices must be plain values (text, numbers, true/false, null)"]
    # A numeric field written as 1e-4 arrives as text in YAML 1.1; store the number it means.
    if _annotation_kind(field) in ("float", "int"):
        choices = [_number(c) if isinstance(c, str) and _number(c) is not None else c for c in choices]
    if len({repr(c) for c in choices}) != len(choices):
        return None, [f"{where}: choices repeat a value"]
    return Param(name, "categorical", choices=tuple(choices), line=line), []


def _numeric(name: str, kind: str, spec: dict[str, Any], line: int, field: Any) -> tuple[Param | None, list[str]]:
    where = _at(line, name)
    field_kind = _annotation_kind(field)
    if field_kind not in ("float", "int"):
        return None, [f"{where}: the field takes {_annotation_text(field)}; use type: categorical with choices"]
    if kind == "float" and field_kind == "int":
        return None, [f"{where}: the field holds an integer; use type: int"]
    values: dict[str, Any] = {}
    for key in ("low", "high", "step"):
        raw = spec.get(key)
        if raw is None:
            if key != "step":
                return None, [f"{where}: {key} is required"]
            continue
        number = _number(raw)
        if number is None or isinstance(raw, bool):
            return None, [f"{where}: {key}={raw!r} is not a number"]
        if kind == "int":
            if number != int(number):
                return None, [f"{where}: {key}={raw!r} must be a whole number for type int"]
            number = int(number)
        values[key] = number
    low, high, step = values["low"], values["high"], values.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        return None, [f"{where}: log must be true or false, not {log!r}"]
    if not math.isfinite(low) or not math.isfinite(high) or low >= high:
        return None, [f"{where}: low ({low:g}) must be below high ({high:g})"]
    if log and low <= 0:
        return None, [f"{where}: a log-scale range must start above 0 (low is {low:g})"]
    if step is not None:
        if log:
            return None, [f"{where}: log and step cannot be combined; use one"]
        if step <= 0:
            return None, [f"{where}: step must be above 0 (is {step:g})"]
        count = (high - low) / step
        if abs(count - round(count)) > 1e-9 * max(1.0, count):
            top = low + math.floor(count) * step
            return None, [
                f"{where}: high ({high:g}) is not low plus a whole number of steps of {step:g}; "
                f"use high: {_clean_float(top):g} or {_clean_float(top + step):g}"
            ]
    return Param(name, kind, low=low, high=high, log=log, step=step, line=line), []


def _check_against_config(param: Param, base: dict[str, Any], nproc: int) -> list[str]:
    """The base config with each end of the range (or each choice) must validate."""
    if param.kind == "categorical":
        probes = [("choice", c) for c in param.choices]
    else:
        values = param.grid_values() if param.step is not None or param.kind == "int" else None
        top = values[-1] if values else param.high
        probes = [("low", param.low), ("high", top)]
    problems = []
    for label, value in probes:
        why = config_problem(base, {param.name: value}, nproc)
        if why:
            problems.append(f"{_at(param.line, param.name)}: {label} {value!r} is rejected by the config: {why}")
    return problems


def _check_grid(space: Space, base: dict[str, Any], nproc: int) -> list[str]:
    continuous = [p for p in space.params if p.grid_values() is None]
    if continuous:
        return [
            f"{_at(p.line, p.name)}: grid search needs discrete values; give this float range a step "
            f"(or use type: categorical)"
            for p in continuous
        ]
    grid = space.grid()
    size = space.grid_size()
    assert grid is not None and size is not None, "every parameter is discrete here"
    if size > MAX_GRID_CHECK:
        return [
            f"the grid has {size} points, more than the {MAX_GRID_CHECK} a study can sensibly run; "
            f"use a coarser step or the tpe sampler"
        ]
    bad = []
    for point in itertools.product(*grid.values()):
        params = dict(zip(grid, point))
        why = config_problem(base, params, nproc)
        if why:
            bad.append(f"grid point {_format_point(params)} is rejected by the config: {why}")
    if len(bad) > 5:
        bad = bad[:5] + [f"... and {len(bad) - 5} more invalid grid points"]
    return bad


def config_problem(base: dict[str, Any], params: dict[str, Any], nproc: int = 1) -> str | None:
    """Why the base config with ``params`` applied is invalid, or None when it is valid."""
    try:
        cfg = config_mod.validate(config_mod.apply_overrides(base, overrides(params)))
        cfg.check_world_size(nproc)
    except config_mod.ConfigError as exc:
        return "; ".join(exc.problems)
    return None


def _format_point(params: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}"


def schema_field(name: str) -> tuple[Any, str]:
    """The pydantic field of a dotted config key (``optim.lr``, ``early_stop.monitor.mode``), or (None, why not)."""
    parts = name.split(".")
    model: type[BaseModel] = config_mod.Config
    if len(parts) < 2 or not all(parts):
        return None, f"not a config key; write section.key, e.g. optim.lr (sections: {', '.join(model.model_fields)})"
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        field = model.model_fields.get(part)
        if field is None:
            if depth == 0:
                return None, f"unknown section {part!r}; sections: {', '.join(model.model_fields)}"
            return None, f"unknown key {part!r} in {where}; valid keys: {', '.join(model.model_fields)}"
        annotation = _strip_optional(field.annotation)
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth == len(parts) - 1:
            if is_model:
                return (
                    None,
                    f"{name} is a section, not a value; name one of its keys ({', '.join(annotation.model_fields)})",
                )
            return field, ""
        if not is_model:
            return None, f"{'.'.join(parts[: depth + 1])} is a value, not a section"
        model = annotation
    raise AssertionError("unreachable: the loop returns at the last part")


def _value_types(field: Any) -> tuple[set[type], list[Any]]:
    """The plain types a field takes and its literal values (``Union[int, Literal["auto"]]`` -> {int}, ["auto"])."""
    annotation = _strip_optional(field.annotation)
    members = (
        typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    )
    kinds: set[type] = set()
    literals: list[Any] = []
    for member in members:
        if typing.get_origin(member) is Literal:
            literals += typing.get_args(member)
        elif member is not type(None):
            kinds.add(member)
    return kinds, literals


def _annotation_kind(field: Any) -> str:
    kinds, _ = _value_types(field)
    for kind in (bool, float, int):  # bool first: it is an int subclass
        if kind in kinds:
            return kind.__name__
    return "other"


def _annotation_text(field: Any) -> str:
    kinds, literals = _value_types(field)
    options = [getattr(k, "__name__", str(k)) for k in kinds] + [repr(v) for v in literals]
    return "one of " + ", ".join(options) if literals else " or ".join(options)


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return None


def _clean_float(value: float) -> float:
    """Grid values without binary noise (0.30000000000000004 -> 0.3), so points compare and print cleanly."""
    return float(f"{value:.12g}")
