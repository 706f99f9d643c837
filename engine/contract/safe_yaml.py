"""The config's safe YAML reader: a file read only when it is a small regular file, and YAML parsed
into JSON-like data only (no tags, no objects, no dates), with depth, size and alias expansion
limited while it is composed. Every refusal is a :class:`ConfigError` naming the line.

Torch-free; the config, the search space and the GUI's editors read YAML through it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.cyaml import CParser


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` are one human-readable line each."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid config\n" + "\n".join(f"  - {p}" for p in problems))


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text)} characters)"


MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 100
MAX_NODES = 10_000
MAX_INT_DIGITS = 30
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
                what = _KEY_KINDS.get(key_node.tag) or shorten(_tag_name(key_node.tag))
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
            raise _Refused(f"{shorten(repr(node.value))} is not a valid {kind}", node.start_mark) from None

    def construct_refused(self, node: Any) -> Any:
        if node.tag == "tag:yaml.org,2002:timestamp":
            problem = f"{shorten(node.value)} reads as a date; quote it to use it as text ({_ALLOWED})"
            raise _Refused(problem, node.start_mark)
        raise _Refused(f"{shorten(_tag_name(node.tag))} is not allowed; {_ALLOWED}", node.start_mark)


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
