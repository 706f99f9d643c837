"""Records made ready for the GUI thread: runs of metrics rows as numpy columns. Qt-free.

Nearly every line of a run is a metrics row. The reader thread turns each run of them (between two other
events) into one :class:`MetricsColumns`, a column per series, so the GUI thread only appends arrays;
every other record passes through as it is, in file order.
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from engine.contract.events import MetricsRow, Record, TypedEvent, is_metrics

_FLOAT_MAX = sys.float_info.max
HEADER = frozenset(("v", "type", "time", "step"))
_TIME = operator.itemgetter("time")
_STEP = operator.itemgetter("step")
Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.intp]
# A series' values, and the rows they belong to (None: every row of the run).
Column = tuple[Rows | None, Floats]


@dataclass
class MetricsColumns:
    """Consecutive metrics rows: their steps and (absolute) times, a column per series, and the last row."""

    steps: Floats
    times: Floats
    columns: dict[str, Column]
    last: MetricsRow

    def __len__(self) -> int:
        return len(self.steps)


Item = MetricsColumns | TypedEvent


def ready_items(records: Iterable[Record]) -> list[Item]:
    """Records in file order, each run of metrics rows as one :class:`MetricsColumns`."""
    records = records if isinstance(records, list) else list(records)
    items: list[Item] = []
    start = 0
    for i in [i for i, e in enumerate(records) if not is_metrics(e)] + [len(records)]:
        if i > start:
            items.append(metrics_columns(cast(list[MetricsRow], records[start:i])))
        if i < len(records):
            items.append(cast(TypedEvent, records[i]))
        start = i + 1
    return items


def coalesce(items: list[Item]) -> list[Item]:
    """The same items with each run of consecutive metrics columns joined into one, so the GUI thread
    appends once per series however many reads made them."""
    out: list[Item] = []
    group: list[MetricsColumns] = []
    for item in items:
        if isinstance(item, MetricsColumns):
            group.append(item)
            continue
        if group:
            out.append(concat_columns(group))
            group = []
        out.append(item)
    if group:
        out.append(concat_columns(group))
    return out


def concat_columns(runs: list[MetricsColumns]) -> MetricsColumns:
    """Consecutive runs of metrics rows as one; a series missing from some rows keeps the rows it has."""
    if len(runs) == 1:
        return runs[0]
    sizes = [len(run) for run in runs]
    firsts = np.cumsum([0, *sizes[:-1]])
    columns: dict[str, Column] = {}
    for name in dict.fromkeys(name for run in runs for name in run.columns):
        parts = [(run.columns.get(name), first, size) for run, first, size in zip(runs, firsts, sizes, strict=True)]
        values = np.concatenate([column[1] for column, _, _ in parts if column is not None])
        if all(column is not None and column[0] is None for column, _, _ in parts):
            columns[name] = (None, values)
            continue
        rows = [
            (np.arange(size, dtype=np.intp) if column[0] is None else column[0]) + first
            for column, first, size in parts
            if column is not None
        ]
        columns[name] = (np.concatenate(rows), values)
    steps = np.concatenate([run.steps for run in runs])
    times = np.concatenate([run.times for run in runs])
    return MetricsColumns(steps, times, columns, runs[-1].last)


def item_count(items: Iterable[Item]) -> int:
    """The records these items stand for."""
    return sum(len(item) if isinstance(item, MetricsColumns) else 1 for item in items)


def metrics_columns(rows: list[MetricsRow]) -> MetricsColumns:
    """Metrics rows column by column: the hot path of ingestion.

    Engines log the same fields every time, so all scalar fields become one table in one pass and each other
    field one numpy conversion over the run, instead of a Python step per value; a field that is missing,
    null or oddly typed somewhere takes the per-row path.
    """
    steps = np.array(list(map(_STEP, rows)), dtype=np.float64)
    times = np.array(list(map(_TIME, rows)), dtype=np.float64)
    columns: dict[str, Column] = {}
    first = rows[0]
    keys = dict.fromkeys(first)
    same_keys = all(map(first.keys().__eq__, map(dict.keys, rows)))
    if not same_keys:
        for row in rows:
            if row.keys() != keys.keys():
                keys.update(dict.fromkeys(row))
    scalars = [k for k in keys if k not in HEADER and type(first.get(k)) in (float, int)]
    if same_keys and scalars:
        try:
            # Straight from the rows' values into the table: no list of tuples for numpy to inspect.
            per_row = map(operator.itemgetter(*scalars), rows)  # a tuple per row; one field: its bare value
            flat = itertools.chain.from_iterable(per_row) if len(scalars) > 1 else per_row
            table = np.fromiter(flat, dtype=np.float64, count=len(rows) * len(scalars))
        except (TypeError, ValueError, OverflowError):  # a string or a huge integer somewhere: per field below
            pass
        else:
            table = table.reshape(len(rows), len(scalars))
            for i, key in enumerate(scalars):
                if np.isnan(table[:, i]).any():
                    # numpy reads a null as NaN: tell a NaN value (shown) from a null (no point).
                    _per_row(columns, key, [row[key] for row in rows])
                else:
                    columns[f"metrics/{key}"] = (None, table[:, i])
            keys = {k: None for k in keys if k not in scalars}
    for key in keys:
        if key in HEADER:
            continue
        first_value = first.get(key)
        column = [row.get(key) for row in rows]
        try:
            if type(first_value) is bool or first_value is None:
                raise TypeError(key)
            values = np.array(column, dtype=np.float64)
            if np.isnan(values).any() and None in column:
                raise TypeError(key)
        except (TypeError, ValueError, OverflowError):
            _per_row(columns, key, column)
            continue
        if values.ndim == 1:
            columns[f"metrics/{key}"] = (None, values)
        elif values.ndim == 2:  # per-rank values: one series per index
            for i in range(values.shape[1]):
                columns[f"metrics/{key}/{i}"] = (None, values[:, i])
    return MetricsColumns(steps, times, columns, rows[-1])


def _per_row(columns: dict[str, Column], key: str, column: list[Any]) -> None:
    """A field that is not a number in every row: the rows where it is one (or a list of them, per rank)."""
    points: dict[str, tuple[list[int], list[float]]] = {}
    for row, value in enumerate(column):
        kind = type(value)
        if kind is int and abs(value) > _FLOAT_MAX:  # an integer field past a float's range: shown as non-finite
            _add(points, f"metrics/{key}", row, math.inf if value > 0 else -math.inf)
        elif kind is float or kind is int:
            _add(points, f"metrics/{key}", row, value)
        elif kind is list:
            for i, item in enumerate(value):
                if type(item) in (float, int):
                    _add(points, f"metrics/{key}/{i}", row, item)
    for name, (rows, values) in points.items():
        columns[name] = (np.array(rows, dtype=np.intp), np.array(values, dtype=np.float64))


def _add(points: dict[str, tuple[list[int], list[float]]], name: str, row: int, value: float) -> None:
    bucket = points.get(name)
    if bucket is None:
        bucket = points[name] = ([], [])
    bucket[0].append(row)
    bucket[1].append(value)
