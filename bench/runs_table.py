"""Benchmark of the runs table: filtering and sorting 500 runs, per keystroke. Prints figures; asserts nothing.

    python bench/runs_table.py              500 runs, a filter typed character by character, each column sorted
    python bench/runs_table.py --runs 2000

Each keystroke is timed from the filter box's new text to the table repainted (``setText`` then the
posted events processed, offscreen): the parse, the filter, the sort, the grouping, the model reset and
the view's relayout and paint; and the model's part alone, without the repaint. A sort is timed the
same two ways. The target is one
frame (16 ms) per keystroke. The same-run baseline is Qt's own
``QSortFilterProxyModel`` over a ``QStandardItemModel`` of the same rows and columns, filtered by the same
text (a plain substring over every column, no conditions, no groups) in a table view of the same size,
row height and header (so that both paint as many cells): what the table would cost with nothing of its own.

A new run is timed from the workspace's rescan handed to the panel (one more run than before) to the table
repainted, sorted and grouped; its baseline is the same Qt table with the run's row appended, sorted dynamically.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from bench.machine import describe  # noqa: E402
from engine.contract.notes import make_notes  # noqa: E402
from engine.contract.rundir import RunSummary  # noqa: E402
from gui.models.lab import RunRow, Scan, StudyInfo, TrialInfo  # noqa: E402
from gui.theme import LIGHT  # noqa: E402
from gui.widgets.runs import RunsPanel, WorkspaceWatcher  # noqa: E402

FRAME_MS = 16.0
NEW_RUNS = 10  # runs that arrive one at a time after the first ones
TYPED = ["baseline", "optim.lr < 1e-3", "optim.lr < 1e-3 model.n_layers >= 4", "state = finished warm"]
STATES = ["finished", "finished", "finished", "stopped", "failed", "running"]
FIELDS = ["optim.lr", "model.n_layers", "model.d_model", "tokenizer.kind"]  # the config fields shown
TAGS = ["baseline", "sweep", "long", "cpu", "gpu", "ablation", "warmup"]


def synthetic(n: int, seed: int = 0) -> Scan:
    """``n`` runs with 24 config fields, tags and notes; one in ten a trial of one of five studies."""
    rng = random.Random(seed)
    t0 = time.time() - 30 * 86400
    rows = []
    for i in range(n):
        start = t0 + i * 3600 * rng.random()
        best = rng.uniform(1.5, 4.0)
        summary = RunSummary(
            Path(f"/bench/run-{i:04d}"), f"run-{i:04d}", rng.choice(STATES), start, 1000, 1000, best,
            start + rng.uniform(60, 7200), "finished", best + rng.random() * 0.1,
        )  # fmt: skip
        config = {f"section{j}.field{j}": rng.random() for j in range(20)}
        config |= {
            "optim.lr": 10 ** rng.uniform(-5, -2),
            "model.n_layers": rng.randint(2, 8),
            "model.d_model": rng.choice([128, 256, 512]),
            "tokenizer.kind": rng.choice(["REMI", "TSD"]),
        }
        note = rng.choice(["", "warmup helped", "diverged at 3k", "the reference"])
        notes = make_notes("", rng.sample(TAGS, rng.randint(0, 3)), note)
        study = f"study{i % 5}" if i % 10 == 0 else None
        trial = TrialInfo(i, "COMPLETE", best, {"optim.lr": config["optim.lr"]}) if study else None
        rows.append(RunRow(summary, config, notes, None, study, trial))
    studies = {
        f"study{k}": StudyInfo(f"study{k}", Path(f"/bench/studies/study{k}"), params=["optim.lr"]) for k in range(5)
    }
    return Scan(Path("/bench"), rows, studies)


def keystrokes() -> list[str]:
    return [text[:i] for text in TYPED for i in range(1, len(text) + 1)] + [""]


def timed(app: QtWidgets.QApplication | None, act) -> float:
    """Milliseconds for ``act`` and, given the app, the repaint it causes."""
    start = time.perf_counter()
    act()
    if app is not None:
        app.processEvents()
    return (time.perf_counter() - start) * 1000


Figures = tuple[list[float], list[float], list[float], list[float]]
ROW_PX = 22  # the runs table's row height (RunsPanel)


def sort_all(app: QtWidgets.QApplication | None, columns: int, sort) -> list[float]:
    """Every column sorted both ways; with the app, each to the table repainted."""
    orders = (QtCore.Qt.SortOrder.AscendingOrder, QtCore.Qt.SortOrder.DescendingOrder)
    return [timed(app, lambda c=c, o=o: sort(c, o)) for c in range(columns) for o in orders]


def ours(app: QtWidgets.QApplication, scan: Scan) -> tuple[Figures, QtCore.QSize]:
    with tempfile.TemporaryDirectory() as empty:
        watcher = WorkspaceWatcher(Path(empty), interval_ms=3_600_000)
        panel = RunsPanel(watcher, LIGHT)
        panel.resize(900, 700)
        panel.show()
        panel._on_refreshed(watcher.root, scan)
        panel.model.set_fields(FIELDS)
        app.processEvents()
        typing = [timed(app, lambda t=t: panel.filter.setText(t)) for t in keystrokes()]
        # The model's part alone (parse, filter, sort, group, reset), the view not repainted.
        model_only = [timed(None, lambda t=t: panel.model.set_filter(t)) for t in keystrokes()]
        sorting = sort_all(app, panel.model.columnCount(), panel.table.sortByColumn)
        sort_model = sort_all(None, panel.model.columnCount(), panel.model.sort)
        size = panel.table.size()
        assert panel.table.verticalHeader().defaultSectionSize() == ROW_PX
        watcher.stop()
        panel.close()
    return (typing, sorting, model_only, sort_model), size


def qt_items(row: RunRow) -> list[QtGui.QStandardItem]:
    s = row.summary
    cells = [s.name, s.state, str(s.start_time), str(row.duration_s), str(s.step), f"{s.best_val_loss:.4f}"]
    cells += [f"{s.last_val_loss:.4f}", *(str(row.config[f]) for f in FIELDS), " ".join(row.tags)]
    return [QtGui.QStandardItem(text) for text in cells]


def qt_table(
    rows: list[RunRow], size: QtCore.QSize
) -> tuple[QtGui.QStandardItemModel, QtCore.QSortFilterProxyModel, QtWidgets.QTableView]:
    """The baseline: Qt's own table of the same cells, shown at ``size``."""
    model = QtGui.QStandardItemModel(0, 8 + len(FIELDS))
    for row in rows:
        model.appendRow(qt_items(row))
    proxy = QtCore.QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setFilterKeyColumn(-1)
    proxy.setFilterCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
    view = QtWidgets.QTableView()
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.verticalHeader().hide()
    view.verticalHeader().setDefaultSectionSize(ROW_PX)
    view.resize(size)
    view.show()
    return model, proxy, view


def baseline(app: QtWidgets.QApplication, scan: Scan, size: QtCore.QSize) -> Figures:
    model, proxy, view = qt_table(scan.runs, size)
    app.processEvents()
    typing = [timed(app, lambda t=t: proxy.setFilterFixedString(t)) for t in keystrokes()]
    model_only = [timed(None, lambda t=t: proxy.setFilterFixedString(t)) for t in keystrokes()]
    sorting = sort_all(app, model.columnCount(), view.sortByColumn)
    sort_model = sort_all(None, model.columnCount(), proxy.sort)
    view.close()
    return typing, sorting, model_only, sort_model


def new_runs(app: QtWidgets.QApplication, scan: Scan, runs: int) -> tuple[list[float], list[float]]:
    """Each run after the first ``runs`` arriving on its own: ours, sorted by best value and grouped by study, and
    the baseline's."""
    ours = []
    with tempfile.TemporaryDirectory() as empty:
        watcher = WorkspaceWatcher(Path(empty), interval_ms=3_600_000)
        panel = RunsPanel(watcher, LIGHT)
        panel.resize(900, 700)
        panel.show()
        panel._on_refreshed(watcher.root, Scan(scan.root, scan.runs[:runs], scan.studies))
        panel.model.set_fields(FIELDS)
        panel.table.sortByColumn(5, QtCore.Qt.SortOrder.AscendingOrder)
        app.processEvents()
        for n in range(runs + 1, len(scan.runs) + 1):
            grown = Scan(scan.root, scan.runs[:n], scan.studies)
            ours.append(timed(app, lambda g=grown: panel._on_refreshed(watcher.root, g)))
        assert panel.model.rowCount() >= len(scan.runs)
        watcher.stop()
        panel.close()
    model, proxy, view = qt_table(scan.runs[:runs], panel.table.size())
    proxy.setDynamicSortFilter(True)
    view.sortByColumn(5, QtCore.Qt.SortOrder.AscendingOrder)
    app.processEvents()
    base = [timed(app, lambda r=row: model.appendRow(qt_items(r))) for row in scan.runs[runs:]]
    view.close()
    return ours, base


def line(name: str, ms: list[float], base: list[float]) -> str:
    p50, p95, worst = statistics.median(ms), sorted(ms)[int(0.95 * (len(ms) - 1))], max(ms)
    over = sum(1 for m in ms if m > FRAME_MS)
    return (
        f"{name:<44} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  max {worst:6.2f} ms  "
        f"{over}/{len(ms)} over {FRAME_MS:.0f} ms  (baseline p50 {statistics.median(base):5.2f} ms, "
        f"ratio {p50 / max(statistics.median(base), 1e-9):.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best round of each is reported")
    args = parser.parse_args()
    print(describe())
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    scan = synthetic(args.runs)
    print(
        f"{args.runs} runs, {len(keystrokes())} keystrokes typed, every column sorted both ways; best of {args.repeat}"
    )
    rounds = []
    for _ in range(args.repeat):
        figures, size = ours(app, scan)
        rounds.append((figures, baseline(app, scan, size)))
    best = min(rounds, key=lambda r: statistics.median(r[0][0]))
    (typing, sorting, model_only, sort_model), (base_typing, base_sorting, base_model, base_sort_model) = best
    print(line("filter, model only", model_only, base_model))
    print(line("filter, to repainted", typing, base_typing))
    print(line("sort, model only", sort_model, base_sort_model))
    print(line("sort, to repainted", sorting, base_sorting))
    arriving = [new_runs(app, synthetic(args.runs + NEW_RUNS), args.runs) for _ in range(args.repeat)]
    arrived, base = min(arriving, key=lambda r: statistics.median(r[0]))
    print(line(f"one new run among {args.runs}, to the table updated", arrived, base))


if __name__ == "__main__":
    main()
