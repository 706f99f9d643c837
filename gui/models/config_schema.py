"""The config schema as the editor's form shows it. Qt-free.

Generated from :class:`engine.contract.config.Config`: every section and field with its type,
constraints and help text, so a field added to the schema appears in the editor without GUI work.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from engine.contract import config as config_mod


@dataclass(frozen=True)
class FieldSpec:
    """One config field as the form shows it."""

    section: str
    name: str
    kind: str  # bool | int | float | str | choice | yaml (lists, mappings, unions: edited as YAML flow text)
    default: Any
    description: str
    choices: tuple[Any, ...] = ()  # choice: the allowed values; int/yaml: extra words allowed (e.g. "auto")
    optional: bool = False  # None ("null") is allowed
    bounds: tuple[tuple[str, float], ...] = ()  # (">=", 0), ("<", 1), ...
    multiple_of: float | None = None
    type_name: str = ""

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    def range_text(self) -> str:
        """What is allowed, in a few characters: ``> 0 and <= 1``, ``one of: a, b``, ``multiple of 8``."""
        parts = []
        if self.kind == "choice":
            parts.append("one of: " + ", ".join(format_value(c) for c in self.choices))
        else:
            lower = [(op, v) for op, v in self.bounds if op in (">", ">=")]
            upper = [(op, v) for op, v in self.bounds if op in ("<", "<=")]
            if lower and upper:
                (lo_op, lo), (hi_op, hi) = lower[0], upper[0]
                parts.append(f"{_num(lo)} {'<' if lo_op == '>' else '≤'} x {'<' if hi_op == '<' else '≤'} {_num(hi)}")
            elif lower:
                parts.append(f"{'>' if lower[0][0] == '>' else '≥'} {_num(lower[0][1])}")
            elif upper:
                parts.append(f"{'<' if upper[0][0] == '<' else '≤'} {_num(upper[0][1])}")
            if self.multiple_of:
                parts.append(f"multiple of {_num(self.multiple_of)}")
            if self.choices:
                parts.append("or " + ", ".join(str(c) for c in self.choices))
        if self.optional:
            parts.append("or null")
        return ", ".join(parts)

    def tooltip(self) -> str:
        text = f"{self.path} ({self.type_name})\n{self.description}"
        allowed = self.range_text()
        if allowed:
            text += f"\nAllowed: {allowed}"
        return text + f"\nDefault: {format_value(self.default)}"

    def parse(self, text: str) -> Any:
        """A form entry to a value: numbers as numbers (``1e-3`` too, which YAML 1.1 would read as a
        string), empty as null, anything else as YAML so that a wrong entry reaches validation as typed."""
        text = text.strip()
        if text == "":
            return None
        if self.kind in ("int", "float"):
            try:
                return int(text)
            except ValueError:
                pass
            try:
                return float(text)
            except ValueError:
                pass
        if self.kind == "str":
            return text
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text


@dataclass(frozen=True)
class SectionSpec:
    name: str
    description: str
    fields: tuple[FieldSpec, ...]


def _num(value: float) -> str:
    return f"{value:g}"


_BOUND_ATTRS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _field_spec(section: str, name: str, info: FieldInfo) -> FieldSpec:
    annotation = info.annotation
    optional = False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        # typing.Union, not X | Y: the checks below compare the origin with typing.Union (X | Y is types.UnionType).
        annotation = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    choices: tuple[Any, ...] = ()
    if origin is typing.Literal:
        kind, choices = "choice", tuple(args)
    elif annotation is bool:
        kind = "bool"
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "float"
    elif annotation is str:
        kind = "str"
    elif (
        origin is typing.Union and int in args and all(a is int or typing.get_origin(a) is typing.Literal for a in args)
    ):
        kind = "int"
        choices = tuple(c for a in args if typing.get_origin(a) is typing.Literal for c in typing.get_args(a))
    else:
        kind = "yaml"
    bounds, multiple_of = [], None
    for meta in info.metadata:
        for attr, op in _BOUND_ATTRS:
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append((op, value))
        if getattr(meta, "multiple_of", None) is not None:
            multiple_of = meta.multiple_of
    default = info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = default.model_dump(mode="json")
    elif isinstance(default, list):
        default = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
    type_name = _type_name(info.annotation)
    return FieldSpec(
        section, name, kind, default, info.description or "", choices, optional, tuple(bounds), multiple_of, type_name
    )


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    return re.sub(r"\b(?:engine\.)?config\.", "", text)


def schema_sections(model: type[BaseModel] | None = None) -> list[SectionSpec]:
    """Every section of the config schema with its fields, in schema order."""
    model = model or config_mod.Config
    sections = []
    for name, info in model.model_fields.items():
        section_model = info.annotation
        if not (isinstance(section_model, type) and issubclass(section_model, BaseModel)):
            continue
        fields = tuple(_field_spec(name, fname, finfo) for fname, finfo in section_model.model_fields.items())
        sections.append(SectionSpec(name, info.description or "", fields))
    return sections


def format_value(value: Any) -> str:
    """A value as one line of YAML (flow style), the way the editor writes it."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[:-4]
    return text.removesuffix("...").strip()
