"""Benchmark of a remote workspace: the same window reading the same runs locally and over SSH, side by side.

    python bench/remote.py            all measurements (about two minutes)
    python bench/remote.py --quick    shorter runs

A real OpenSSH server on 127.0.0.1 (tests/sshd.py: Debian's openssh-server, throwaway keys), so the
figures are the app's and asyncssh's cost plus loopback's, not a network's. Each figure is measured
locally first, then over SSH, in this one run; the targets (issue #17):

1. event-written-to-plotted latency p95 over SSH <= 500 ms, at a live 50 events/s
2. opening a finished run of 10 series x 100,000 points over SSH <= 3x the local time
3. sustained ingestion over SSH >= 20,000 events/s with no stall over 50 ms of the window's event loop
4. a workspace of 200 runs listed over SSH, with their notes, in < 2 s (the local runs list's first scan beside it)

Wall-clock figures depend on the machine and its load, printed first (bench/machine.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

from bench import gui as g  # noqa: E402
from bench.machine import describe  # noqa: E402

MAKE_WINDOW = g.make_window
SERVER = None


class Where:
    """Where the window's workspace is: this disk, or the same folder through the loopback sshd."""

    def __init__(self, label: str, url_of):
        self.label = label
        self.url_of = url_of

    def window(self, root: Path):
        window = MAKE_WINDOW(root)
        if self.url_of is not None:
            # The host's podium command, as the Open workspace dialog leaves it in the settings.
            window.settings.setValue("remote/127.0.0.1/podium", SERVER.podium_command())
            assert window.workspaces.open(self.url_of(root)), "the remote workspace did not open"
        return window


def write_finished(run_dir: Path, points: int) -> None:
    run_dir.mkdir()
    t0 = 1.7e9
    with open(run_dir / "events.jsonl", "wb") as f:
        f.write(g.start_line(points, t0))
        f.writelines(g.metrics_line(step, t0 + step * 0.25) for step in range(1, points + 1))
        f.write(
            b'{"v": 1, "type": "run_end", "time": %f, "step": %d, "reason": "finished", "message": ""}\n'
            % (t0 + points, points)
        )


def open_s(app, where: Where, root: Path, points: int) -> float:
    run_dir = root / f"finished-{where.label}"
    write_finished(run_dir, points)
    window = where.window(root)
    g.pump(app, lambda: False, 0.3)
    start = time.perf_counter()
    session = window.open_run(run_dir)
    loss = window.dashboard.plots["loss"]

    def plotted() -> bool:
        return (
            not session.reader.behind
            and session.reader.offset > 0
            and window.dashboard.is_current()
            and bool(loss.curves)
            and len(loss.curves[0].series) == points
        )

    done = g.pump(app, plotted, 300)
    window.repaint()
    took = time.perf_counter() - start
    g.close(window)
    return took if done else float("nan")


def latency_ms(app, where: Where, root: Path, seconds: float, rate: float) -> tuple[float, float, int]:
    run_dir = root / f"latency-{where.label}"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_bytes(g.start_line(10**6, time.time()))
    window = where.window(root)
    window.open_run(run_dir)
    probe = g.PaintProbe(window)
    g.pump(app, lambda: False, 0.5)
    proc = g.spawn_writer(run_dir / "events.jsonl", rate, seconds, stamp=True)
    g.pump(app, lambda: proc.poll() is not None, seconds + 30)
    g.pump(app, lambda: False, 1.0)
    lat = sorted(probe.latencies)
    g.close(window)
    if not lat:
        return float("nan"), float("nan"), 0
    return lat[len(lat) // 2] * 1e3, lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1e3, len(lat)


def list_s(where: Where, root: Path, runs: int) -> float:
    """The runs panel's first list: the runs with their states, and their notes (every other run has some)."""
    from engine.contract.notes import make_notes, write_notes
    from engine.launcher.runs_listing import list_runs
    from gui.access.ssh import SshAccess
    from gui.models.lab import LabIndex, RemoteNotes
    from gui.remote_workspace import RemoteIndex

    folder = root / "many"
    if not folder.exists():
        folder.mkdir()
        for i in range(runs):
            write_finished(folder / f"run-{i:03d}", 1000)
            if i % 2:
                write_notes(folder / f"run-{i:03d}", make_notes(f"run {i}", ["bench"], "a note"))
    if where.url_of is None:
        start = time.perf_counter()
        found = LabIndex(folder).refresh().runs
    else:
        access = SshAccess(where.url_of(folder), podium_command=SERVER.podium_command())
        access.stat(str(folder))  # connected: the list is what is timed
        start = time.perf_counter()
        found = RemoteNotes(access).rows(RemoteIndex(access).refresh())
        access.close()
    took = time.perf_counter() - start
    assert len(found) == runs == len(list_runs(folder)), f"listed {len(found)} of {runs}"
    assert sum(row.notes is not None for row in found) == runs // 2, "notes missing"
    return took


def main(argv: list[str] | None = None) -> int:
    global SERVER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    from PySide6 import QtWidgets

    import gui  # noqa: F401  (refcount guard first)
    from tests.sshd import SshServer

    print(describe())
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    with tempfile.TemporaryDirectory(prefix="podium-bench-remote-") as tmp:
        root = Path(tmp)
        SERVER = server = SshServer(root / "ssh")
        server.start()
        server.trust()
        os.environ["HOME"] = str(server.home)  # the client's ~/.ssh: its key, known_hosts
        os.environ.pop("SSH_AUTH_SOCK", None)
        from gui.access.ssh_lib import asyncssh

        print(f"Podium remote-workspace benchmark: asyncssh {asyncssh.__version__}, OpenSSH sshd on 127.0.0.1")
        places = [Where("local", None), Where("ssh", server.url)]
        try:
            _run(app, places, root, args.quick)
        finally:
            server.stop()
    return 0


def _run(app, places: list[Where], root: Path, quick: bool) -> None:
    points = 100_000
    opened = {w.label: open_s(app, w, root, points) for w in places}
    print(
        f"open a finished run, 10 series x {points:,} points: local {opened['local']:.2f} s, over SSH "
        f"{opened['ssh']:.2f} s; ssh/local {opened['ssh'] / opened['local']:.2f} (target <= 3.00)"
    )
    seconds = 5 if quick else 10
    lat = {w.label: latency_ms(app, w, root, seconds, 50) for w in places}
    print(
        f"event written -> plotted at 50 events/s for {seconds} s: local p50 {lat['local'][0]:.0f} ms p95 "
        f"{lat['local'][1]:.0f} ms ({lat['local'][2]} events); over SSH p50 {lat['ssh'][0]:.0f} ms p95 "
        f"{lat['ssh'][1]:.0f} ms ({lat['ssh'][2]} events) (target over SSH p95 <= 500 ms; ratio "
        f"{lat['ssh'][1] / 500:.2f} of target)"
    )
    flood = 3 if quick else 5
    rates = [20_000, 40_000] if quick else [20_000, 40_000, 80_000]
    for where in places:
        print(f"sustained ingestion, {where.label} ({flood} s floods; stall = longest gap of a 5 ms heartbeat):")
        ingest_root = root / f"ingest-{where.label}"
        ingest_root.mkdir()
        g.make_window = where.window  # bench/gui.py's flood, in a window on this workspace
        try:
            best = max(g.ingest_at(app, ingest_root, rate, flood) for rate in rates)
        finally:
            g.make_window = MAKE_WINDOW
        print(f"  {where.label}: highest sustained rate with no stall > 50 ms: {best:,.0f} events/s")
    print("  (target over SSH >= 20,000 events/s)")
    runs = 200
    listed = {w.label: list_s(w, root, runs) for w in places}
    print(
        f"list a workspace of {runs} finished runs with their notes (first scan): local {listed['local']:.2f} s, "
        f"over SSH {listed['ssh']:.2f} s (target over SSH < 2 s; ratio {listed['ssh'] / 2:.2f} of target)"
    )


if __name__ == "__main__":
    sys.exit(main())
