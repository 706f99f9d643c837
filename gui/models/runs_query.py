"""Filter, sort and group the runs table's rows. Qt-free, and cheap: it runs on every keystroke.

A filter is free words (each must appear in a run's name, state, study, tags or note) and
conditions ``field op value``: ``optim.lr < 1e-3``, ``state = running``, ``tags = baseline``,
``note ~ warmup``. Fields are a run's columns (:data:`BUILTIN`) and any config field. A condition
that cannot mean anything (no value, an unknown field, a number compared with text) is a
:class:`QueryError` whose message says which part and what is valid.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gui.models.lab import RunRow

BUILTIN: dict[str, Callable[[RunRow], Any]] = {
    "name": lambda r: r.title,
    "state": lambda r: r.state,
    "started": lambda r: r.summary.start_time,
    "duration": lambda r: r.duration_s,
    "steps": lambda r: r.summary.step,
    "best_val": lambda r: r.summary.best_val_loss,
    "last_val": lambda r: r.summary.last_val_loss,
    "study": lambda r: r.study,
    "trial": lambda r: r.trial.number if r.trial else None,
    "value": lambda r: r.trial.value if r.trial else None,
    "tags": lambda r: r.tags,
    "note": lambda r: r.notes.note if r.notes else None,
}
OPS = ("<=", ">=", "!=", "==", "<", ">", "=", "~")
_CONDITION = re.compile(
    r"(?P<field>[A-Za-z_][\w.]*)\s*(?P<op><=|>=|!=|==|<|>|=|~)\s*(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"']+)?"
)


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str
    number: float | None  # the value as a number, when it is one

    def test(self, row: RunRow) -> bool:
        got = value_of(row, self.field)
        if got is None:
            return self.op == "!="
        if isinstance(got, tuple):  # tags: any of them
            return any(self._test_one(v) for v in got) if self.op != "!=" else all(self._test_one(v) for v in got)
        return self._test_one(got)

    def _test_one(self, got: Any) -> bool:
        if self.op == "~":
            return self.value.lower() in str(got).lower()
        if self.number is not None and isinstance(got, (int, float)) and not isinstance(got, bool):
            a, b = float(got), self.number
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "!=": a != b}.get(self.op, a == b)
        if self.op in ("<", "<=", ">", ">="):
            return False  # text has no order worth filtering by
        same = str(got).lower() == self.value.lower()
        return not same if self.op == "!=" else same


@dataclass(frozen=True)
class Query:
    words: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def matches(self, row: RunRow, text: str | None = None) -> bool:
        """Whether ``row`` passes; ``text``: its ``search_text()``, when the caller keeps it."""
        if self.words:
            text = row.search_text() if text is None else text
            if not all(w in text for w in self.words):
                return False
        return all(c.test(row) for c in self.conditions)


def parse(text: str, fields: Sequence[str] = ()) -> Query:
    """The filter typed in the box; ``fields`` are the config fields the runs have (for checking names)."""
    conditions = []
    rest = []
    pos = 0
    known = set(BUILTIN) | set(fields)
    for m in _CONDITION.finditer(text):
        rest.append(text[pos : m.start()])
        pos = m.end()
        name, op, value = m.group("field"), m.group("op"), m.group("value")
        if value is None:
            raise QueryError(f"'{m.group(0).strip()}': a value is missing after '{op}' (e.g. {name} {op} 0.001)")
        value = value.strip("\"'")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; fields are a column's name or a config field"
            raise QueryError(f"'{name}': no run has this field{hint}")
        number = _number(value)
        if op in ("<", "<=", ">", ">=") and number is None:
            raise QueryError(f"'{m.group(0).strip()}': '{op}' compares numbers; '{value}' is not one")
        conditions.append(Condition(name, op, value, number))
    rest.append(text[pos:])
    words = " ".join(rest).lower().split()
    stray = [w for w in words if any(w.startswith(op) or w.endswith(op) for op in OPS)]
    if stray:
        raise QueryError(
            f"'{stray[0]}': write a condition as field op value, e.g. optim.lr < 1e-3 (op: {' '.join(OPS)})"
        )
    return Query(tuple(words), tuple(conditions))


def value_of(row: RunRow, name: str) -> Any:
    getter = BUILTIN.get(name)
    if getter is not None:
        return getter(row)
    if row.trial is not None and name in row.trial.params:
        return row.trial.params[name]
    return row.config.get(name)


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers by value, text by its lower case, nothing and NaN last whatever the order."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, tuple):
        value = " ".join(value)
    return (1, str(value).lower())


@dataclass(frozen=True)
class Group:
    """A group's header row: a study, or one value of the field the table is grouped by."""

    key: str
    title: str
    detail: str
    count: int
    study: str | None = None
    collapsed: bool = False


Entry = Group | RunRow


def arrange(
    rows: Sequence[RunRow],
    query: Query,
    sort_field: str | None,
    descending: bool,
    group_by: str | None = None,
    study_details: dict[str, str] | None = None,
    collapsed: frozenset[str] = frozenset(),
    keys: SortKeys | None = None,
) -> list[Entry]:
    """The table's entries: matching rows, sorted, under group headers. Without ``group_by``, runs that
    belong to no study come first and each study's trials follow under its header. ``keys``, kept
    between calls over the same ``rows``, spares a sort from computing every row's key again."""
    shown = [r for r in rows if query.matches(r)] if query.words or query.conditions else list(rows)
    if sort_field is not None:
        shown = (keys or SortKeys(rows)).order(shown, sort_field, descending)
    details = study_details or {}
    groups: dict[str, list[RunRow]] = {}
    loose: list[RunRow] = []
    raw: dict[str, Any] = {}  # a group's value as the config holds it: 2 < 10, as numbers
    for row in shown:
        if group_by:
            value = value_of(row, group_by)
            groups.setdefault(_group_name(value), []).append(row)
            raw.setdefault(_group_name(value), value)
        elif row.study is not None:
            groups.setdefault(row.study, []).append(row)
        else:
            loose.append(row)
    if not group_by:
        for name in details:  # a study with no trial run yet still shows, so it can be opened
            groups.setdefault(name, [])
    out: list[Entry] = list(loose)
    for name in sorted(groups, key=lambda n: sort_key(raw.get(n, n))) if group_by else sorted(groups):
        members = groups[name]
        key = f"{group_by}={name}" if group_by else f"study:{name}"
        if group_by:
            header = Group(key, f"{group_by} = {name}", f"{len(members)} runs", len(members), None, key in collapsed)
        else:
            header = Group(key, f"study {name}", details.get(name, ""), len(members), name, key in collapsed)
        out.append(header)
        if not header.collapsed:
            out += members
    return out


class SortKeys:
    """Each row's place in the order of a field, computed once per field for a list of rows: sorting a
    table of them again (another column, the other way, a narrower filter) is then one integer argsort."""

    def __init__(self, rows: Sequence[RunRow]):
        self._position = {id(r): i for i, r in enumerate(rows)}
        self._rows = rows
        self._ranks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def order(self, shown: Sequence[RunRow], field: str, descending: bool) -> list[RunRow]:
        """``shown`` (some of the rows) by ``field``: ties in their given order, rows without a value last
        whichever the direction."""
        rank, missing = self._ranks.get(field) or self._rank(field)
        at = np.fromiter((self._position[id(r)] for r in shown), dtype=np.intp, count=len(shown))
        ordered = at[np.argsort(rank[at], kind="stable")]
        lacking = missing[ordered]
        present = ordered[~lacking]
        if descending:
            present = present[::-1]
        rows = self._rows
        return [rows[i] for i in present] + [rows[i] for i in ordered[lacking]]

    def _rank(self, field: str) -> tuple[np.ndarray, np.ndarray]:
        keys = [sort_key(value_of(r, field)) for r in self._rows]
        by = sorted(range(len(keys)), key=keys.__getitem__)  # stable: equal keys keep the rows' order
        rank = np.empty(len(keys), dtype=np.intp)
        rank[by] = np.arange(len(keys))
        missing = np.fromiter((k[0] == 2 for k in keys), dtype=bool, count=len(keys))
        self._ranks[field] = rank, missing
        return rank, missing


def _group_name(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, tuple):
        return ", ".join(value) or "(none)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
