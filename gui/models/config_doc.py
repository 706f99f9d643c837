"""The config editor's document: YAML text, the schema's fields, validation with line numbers, diffs. Qt-free.

The text is the source of truth: the form reads values from it and writes
single values back into it (:meth:`ConfigDocument.set_value`) by splicing the
YAML, so comments, order and layout the user wrote survive a form edit.
Validation is the engine's own (:func:`engine.contract.config.validate`), so the
editor accepts exactly what ``main.py run`` accepts; each problem is placed
on the YAML line of the field it names, found through the composed YAML node
tree.

The form is generated from the schema (:mod:`gui.models.config_schema`).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from engine.contract import config as config_mod
from engine.contract.files import atomic_write_text
from gui.models.config_schema import FieldSpec, SectionSpec, format_value, schema_sections

# --------------------------------------------------------------------------- positions


@dataclass
class Entry:
    """Where a key and its value sit in the text (0-based offsets and lines)."""

    key_line: int
    key_col: int
    key_end: int  # offset just after the key
    value_start: int
    value_end: int
    node: yaml.Node


def locate(text: str) -> tuple[dict[str, Entry], list[str]]:
    """Every mapping key's position by dotted path (``optim.lr``, ``early_stop.monitors.0.metric``),
    and warnings for keys given twice (YAML keeps the last one silently)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}, []
    out: dict[str, Entry] = {}
    warnings: list[str] = []

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value)
                path = f"{prefix}{name}"
                if name in seen:
                    warnings.append(
                        f"{path}: given twice (lines {seen[name] + 1} and {key.start_mark.line + 1}); "
                        f"the last one counts"
                    )
                seen[name] = key.start_mark.line
                out[path] = Entry(
                    key.start_mark.line,
                    key.start_mark.column,
                    key.end_mark.index,
                    value.start_mark.index,
                    value.end_mark.index,
                    value,
                )
                walk(value, path + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}{i}"
                out[path] = Entry(
                    item.start_mark.line,
                    item.start_mark.column,
                    item.start_mark.index,
                    item.start_mark.index,
                    item.end_mark.index,
                    item,
                )
                walk(item, path + ".")

    if root is not None:
        walk(root, "")
    return out, warnings


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Problem:
    message: str
    line: int | None = None  # 1-based
    path: str | None = None  # the field (or section) it is about
    severity: str = "error"  # error | warning

    def text(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.message}"


@dataclass
class Validation:
    data: Any = None  # what the YAML parsed to (None on a syntax error)
    config: config_mod.Config | None = None
    problems: list[Problem] = field(default_factory=list)
    syntax_error: bool = False

    @property
    def ok(self) -> bool:
        return self.config is not None and not any(p.severity == "error" for p in self.problems)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def for_path(self, path: str) -> list[Problem]:
        return [p for p in self.problems if p.path == path]


def data_path_problem(config: Any) -> str | None:
    """What the engine would refuse at data preparation, said before the start: a midi_dir
    ``data.path`` that is not a folder (the schema only checks that it is given)."""
    data = getattr(config, "data", None)
    if data is None or data.source != "midi_dir" or not data.path:
        return None
    # The engine runs in the app's working directory, so a relative path is read from there.
    folder = Path(data.path).expanduser().absolute()
    if folder.is_dir():
        return None
    what = "does not exist" if not folder.exists() else "is not a folder"
    return f"data.path: {data.path!r} {what} ({folder}); point it at a folder of .mid/.midi files"


_LINE_RE = re.compile(r"\bline (\d+)")
_PATH_RE = re.compile(r"^(\S+?): ")
_DOTTED_RE = re.compile(r"\b([a-z_]+\.[a-z_]+)\b")


def known_paths(sections: list[SectionSpec]) -> set[str]:
    return {s.name for s in sections} | {f.path for s in sections for f in s.fields}


def _problem_path(problem: str, known: set[str], sections: list[SectionSpec], entries: dict[str, Entry]) -> str | None:
    """The field a problem of :class:`engine.contract.config.ConfigError` is about.

    The engine names the path before the first colon (``optim.lr: 5.0 is not
    valid``); a section-level check names the section and mentions its fields
    in the message (``tokenizer: pitch_low (90) must be below pitch_high``);
    a cross-section check names dotted paths in the message only.
    """
    m = _PATH_RE.match(problem)
    head = m.group(1) if m else ""
    candidates = []
    if head:
        parts = head.split(".")
        # Unknown keys and list items are paths the text has; union branches (".int") are not.
        for n in range(len(parts), 0, -1):
            path = ".".join(parts[:n])
            if path in entries or path in known:
                candidates.append(path)
                break
    mentioned = [p for p in _DOTTED_RE.findall(problem) if p in known]
    section = candidates[0] if candidates and "." not in candidates[0] else None
    if section is not None:
        spec = next((s for s in sections if s.name == section), None)
        words = re.findall(r"\b\w+\b", problem[len(head) + 1 :])
        names = {f.name: f.path for f in spec.fields} if spec else {}
        inner = [names[w] for w in words if w in names]  # in the order the message names them
        return next((p for p in mentioned + inner if p.startswith(section + ".")), section)
    if candidates:
        return candidates[0]
    return mentioned[0] if mentioned else None


class ConfigDocument:
    """The text being edited, where it came from, and what the engine thinks of it."""

    def __init__(self, text: str | None = None, path: str | os.PathLike[str] | None = None):
        self.sections = schema_sections()
        self.fields: dict[str, FieldSpec] = {f.path: f for s in self.sections for f in s.fields}
        self._known = known_paths(self.sections)
        self.defaults: dict[str, Any] = config_mod.Config().model_dump(mode="json")
        self.path: Path | None = Path(path) if path else None
        self.nproc: int | None = None  # also check that the batch splits over this many ranks
        self.text = ""
        self.saved_text = ""
        self.entries: dict[str, Entry] = {}
        self.validation = Validation()
        self.version = 0
        self.set_text(config_mod.defaults_yaml() if text is None else text)
        self.saved_text = self.text if path else ""

    # ------------------------------------------------------------ text

    @property
    def dirty(self) -> bool:
        return self.text != self.saved_text

    def set_text(self, text: str) -> Validation:
        self.text = text
        self.version += 1
        self.entries, duplicates = locate(text)
        self.validation = self._validate(duplicates)
        return self.validation

    def set_nproc(self, nproc: int | None) -> Validation:
        self.nproc = nproc
        return self.set_text(self.text)

    def _validate(self, duplicates: list[str]) -> Validation:
        result = Validation()
        try:
            data = config_mod.parse_yaml(self.text)
        except config_mod.ConfigError as exc:
            result.syntax_error = True
            for problem in exc.problems:
                m = _LINE_RE.search(problem)
                result.problems.append(Problem(problem, int(m.group(1)) if m else None))
            return result
        result.data = data
        for warning in duplicates:
            path = warning.split(":", 1)[0]
            result.problems.append(Problem(warning, self.line_of(path), path, "warning"))
        try:
            result.config = config_mod.validate(data)
            if self.nproc:
                result.config.check_world_size(self.nproc)
            missing = data_path_problem(result.config)
            if missing:
                # A warning here (the file may be meant for another machine); the New-run dialog refuses it.
                result.problems.append(Problem(missing, self.line_of("data.path"), "data.path", "warning"))
        except config_mod.ConfigError as exc:
            for problem in exc.problems:
                field_path = _problem_path(problem, self._known, self.sections, self.entries)
                result.problems.append(Problem(problem, self.line_of(field_path) if field_path else 1, field_path))
        return result

    def line_of(self, path: str | None) -> int | None:
        """1-based line of ``path`` in the text, or of its nearest written parent; None when nothing is."""
        while path:
            entry = self.entries.get(path)
            if entry is not None:
                return entry.key_line + 1
            path = path.rpartition(".")[0]
        return None

    def path_at_line(self, line: int) -> str | None:
        """The deepest field whose key is on ``line`` (1-based), for going from the text to the form."""
        best = None
        for path, entry in self.entries.items():
            if entry.key_line + 1 == line and (best is None or len(path) > len(best)):
                best = path
        return best

    # ------------------------------------------------------------ values

    def raw(self) -> dict[str, Any]:
        data = self.validation.data
        return data if isinstance(data, dict) else {}

    def is_set(self, path: str) -> bool:
        section, _, name = path.partition(".")
        value = self.raw().get(section)
        return isinstance(value, dict) and name in value

    def value(self, path: str) -> Any:
        """The value in the text when it is there, else the default."""
        section, _, name = path.partition(".")
        value = self.raw().get(section)
        if isinstance(value, dict) and name in value:
            return value[name]
        return self.defaults.get(section, {}).get(name)

    def effective(self) -> dict[str, Any]:
        """The config as the engine would use it: validated when valid, else the text laid over the defaults."""
        if self.validation.config is not None:
            return self.validation.config.model_dump(mode="json")
        merged = {k: dict(v) if isinstance(v, dict) else v for k, v in self.defaults.items()}
        for section, values in self.raw().items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section].update(values)
            else:
                merged[section] = values
        return merged

    def set_value(self, path: str, value: Any) -> bool:
        """Write one field into the text, keeping everything else as written. False while the YAML
        does not parse (the form is read-only then: it would have nothing to splice into)."""
        if self.validation.syntax_error:
            return False
        data = self.validation.data
        if data is not None and not isinstance(data, dict):
            return False  # a top level that is not a mapping: nothing to splice into
        section, _, name = path.partition(".")
        flow = format_value(value)
        text = self.text
        entry = self.entries.get(path)
        section_entry = self.entries.get(section)
        if entry is not None and _block_parent(section_entry):
            colon = text.index(":", entry.key_end)
            # A block collection's end mark lies past its newline (and "key:" alone has an empty value):
            # replace up to the value's last character, keeping what follows, a comment included.
            end = max(_content_end(text, entry.value_end), colon + 1)
            new = text[: colon + 1] + " " + flow + text[end:]
        elif entry is None and _block_parent(section_entry):
            node = section_entry.node
            indent = " " * node.value[0][0].start_mark.column
            line_end = _end_of_line(text, _content_end(text, node.value[-1][1].end_mark.index))
            head = text[:line_end] if text[:line_end].endswith("\n") else text[:line_end] + "\n"
            new = head + f"{indent}{name}: {flow}\n" + text[line_end:]
        elif section_entry is not None and _empty_scalar(section_entry):
            colon = text.index(":", section_entry.key_end)
            new = text[: colon + 1] + f"\n  {name}: {flow}" + text[max(section_entry.value_end, colon + 1) :]
        elif section_entry is None and not _flow_root(text):
            sep = "" if not text or text.endswith("\n") else "\n"
            new = text + sep + f"{section}:\n  {name}: {flow}\n"
        else:
            # A flow-style section ({lr: 1}) or a section that is not a mapping: rewrite the document.
            data = dict(data or {})
            current = data.get(section)
            data[section] = {**(current if isinstance(current, dict) else {}), name: value}
            new = yaml.safe_dump(data, sort_keys=False)
        self.set_text(new)
        return True

    def reset_value(self, path: str) -> bool:
        """Remove a field from the text (it takes its default); only single-line block entries."""
        entry = self.entries.get(path)
        if entry is None or self.validation.syntax_error or not _block_parent(self.entries.get(path.partition(".")[0])):
            return False
        text = self.text
        start = text.rfind("\n", 0, entry.key_end) + 1
        end = _end_of_line(text, _content_end(text, max(entry.value_end, entry.key_end)))
        if "\n" in text[entry.key_end : _content_end(text, entry.value_end)]:
            return False
        self.set_text(text[:start] + text[end:])
        return True

    # ------------------------------------------------------------ files

    def load(self, path: str | os.PathLike[str]) -> Validation:
        path = Path(path)
        text = path.read_text()
        self.path = path
        self.saved_text = text
        return self.set_text(text)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the text (as written, comments kept). Refuses an invalid config: a saved file is
        one ``main.py run -c`` accepts."""
        target = Path(path) if path else self.path
        if target is None:
            raise ValueError("no file name: use save as")
        if not self.validation.ok:
            raise config_mod.ConfigError([p.text() for p in self.validation.errors()], str(target))
        atomic_write_text(target, self.text)
        self.path = target
        self.saved_text = self.text
        self.version += 1
        return target


def _flow_root(text: str) -> bool:
    """Whether the document is one flow mapping (``{run: {...}}``, ``{}``): a block section cannot follow it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return False
    return isinstance(root, yaml.MappingNode) and bool(root.flow_style)


def _block_parent(section_entry: Entry | None) -> TypeGuard[Entry]:
    return section_entry is not None and _block_mapping(section_entry)


def _block_mapping(entry: Entry) -> bool:
    node = entry.node
    return isinstance(node, yaml.MappingNode) and not node.flow_style and bool(node.value)


def _empty_scalar(entry: Entry) -> bool:
    node = entry.node
    return isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")


def _content_end(text: str, index: int) -> int:
    while index > 0 and text[index - 1] in " \t\r\n":
        index -= 1
    return index


def _end_of_line(text: str, index: int) -> int:
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


# --------------------------------------------------------------------------- launching


@dataclass(frozen=True)
class LaunchRequest:
    """What "Start run" / "Fork from checkpoint" asks the window to do."""

    name: str
    run_dir: Path
    nproc: int
    config_text: str  # the editor's text, written as the new run's config
    from_checkpoint: Path | None = None


def launch_problems(
    name: str, workspace: Path | None, from_checkpoint: Path | None = None, fork: bool = False
) -> list[str]:
    """What stands in the way of starting a run called ``name`` in ``workspace`` (the config aside)."""
    problems = []
    name = name.strip()
    if workspace is None:
        problems.append("no runs folder: open a workspace first")
    if not name:
        problems.append("run name: give the new run a name")
    elif "/" in name or name in (".", "..") or name.startswith("."):
        problems.append(f"run name: {name!r} must be a plain folder name")
    elif workspace is not None and (workspace / name).exists() and any((workspace / name).iterdir()):
        problems.append(f"run name: {workspace / name} already holds a run; choose another name")
    if fork:
        if from_checkpoint is None:
            problems.append("fork: choose the checkpoint to start from")
        elif not (Path(from_checkpoint) / "manifest.json").is_file():
            problems.append(f"fork: {from_checkpoint} is not a checkpoint folder (no manifest.json)")
    return problems


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class DiffRow:
    path: str
    mine: str
    theirs: str


_MISSING = object()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; lists stay values (they compare as a whole)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and prefix == "":
                out.update(flatten(value, path + "."))
            else:
                out[path] = value
    return out


def diff(mine: dict[str, Any], theirs: dict[str, Any]) -> list[DiffRow]:
    """Fields whose values differ, in schema order (fields only one side has, too)."""
    a, b = flatten(mine), flatten(theirs)
    rows = []
    for path in list(a) + [p for p in b if p not in a]:
        x, y = a.get(path, _MISSING), b.get(path, _MISSING)
        if x != y or type(x) is not type(y) and not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            rows.append(
                DiffRow(path, "—" if x is _MISSING else format_value(x), "—" if y is _MISSING else format_value(y))
            )
    return rows


def unified(mine: dict[str, Any], theirs: dict[str, Any], a: str = "this config", b: str = "other") -> str:
    """A text diff of the two configs in the engine's canonical dump (as config.yaml files are written)."""

    def dump(config: dict[str, Any]) -> list[str]:
        text: str = yaml.safe_dump(config, sort_keys=False)
        return text.splitlines(keepends=True)

    return "".join(difflib.unified_diff(dump(theirs), dump(mine), fromfile=b, tofile=a))


def read_config_text(text: str, source: str) -> dict[str, Any]:
    """A run's config.yaml (or any config file), read by whoever holds it, as the effective config dict, for
    diffs. Raises :class:`engine.contract.config.ConfigError` naming ``source`` when it is invalid."""
    data = config_mod.parse_yaml(text, source)
    if data is not None and not isinstance(data, dict):
        raise config_mod.ConfigError(
            [f"the top level must be a mapping of sections, not {type(data).__name__}"], source
        )
    return config_mod.validate(data or {}, source).model_dump(mode="json")
