"""``podium stop``, the app's stop ladder and ``podium run --resume`` trust launcher.json only when the process
it names is verifiably this run's launcher: pid, start time and command line can be copied from /proc by
anyone, so the process must also be ``podium run`` of this very folder, and launcher.json the user's own."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.contract.launcher_record import ProcessIdentity
from engine.contract.rundir import RunDir
from engine.launcher.cli import main
from gui.access.local import LocalAccess
from tests.helpers import wait_until

FAKE_PODIUM = Path(__file__).resolve().parent / "gui" / "fake_podium" / "podium"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []

    def start(argv: list[str]) -> subprocess.Popen:
        started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _launcher(processes, run: Path) -> subprocess.Popen:
    """The stand-in engine under a launcher's command line (``podium run -r RUN``); it writes launcher.json."""
    proc = processes([sys.executable, str(FAKE_PODIUM), "run", "-r", str(run), "--interval", "0.05", "--ignore-stop"])
    wait_until(lambda: RunDir(run).launcher_identity(), 30, "the launcher's launcher.json")
    return proc


def _crafted_run(tmp_path: Path, identity: ProcessIdentity) -> Path:
    run = tmp_path / "scratch"
    run.mkdir()
    (run / "events.jsonl").write_text("")
    (run / "launcher.json").write_text(identity.model_dump_json())
    (run / "launcher.json").chmod(0o600)
    return run


def test_a_live_process_s_real_identity_copied_into_launcher_json_is_not_signalled(tmp_path, processes, capsys):
    sleeper = processes(["sleep", "100"])
    wait_until(lambda: ProcessIdentity.of(sleeper.pid).cmdline == ["sleep", "100"], 10, "sleep's command line")
    run = _crafted_run(tmp_path, ProcessIdentity.of(sleeper.pid))
    assert main(["stop", str(run), "--signal", "KILL"]) == 1
    assert "KILL not sent" in capsys.readouterr().err
    with pytest.raises(ProcessLookupError, match="verifiably this run's launcher"):
        LocalAccess(str(tmp_path)).signal_launcher(str(run), "KILL")
    assert sleeper.poll() is None, "the crafted launcher.json's process was signalled"


def test_another_run_s_launcher_is_not_signalled_for_a_run_whose_launcher_json_names_it(tmp_path, processes):
    other = _launcher(processes, tmp_path / "other")
    run = _crafted_run(tmp_path, RunDir(tmp_path / "other").launcher_identity())
    assert main(["stop", str(run), "--signal", "KILL"]) == 1
    with pytest.raises(ProcessLookupError):  # the app's ladder, as for a run it did not start
        LocalAccess(str(tmp_path)).signal_launcher(str(run), "KILL")
    with pytest.raises(ProcessLookupError):  # nor with the pid given: it does not launch this run
        LocalAccess(str(tmp_path)).signal_launcher(str(run), "KILL", other.pid)
    assert other.poll() is None


def test_the_genuine_launcher_stops_only_while_its_launcher_json_is_the_user_s_alone(tmp_path, processes, capsys):
    run = tmp_path / "genuine"
    launcher = _launcher(processes, run)
    (run / "launcher.json").chmod(0o620)  # group-writable: anyone in the group could have named any process
    assert main(["stop", str(run)]) == 1
    assert launcher.poll() is None
    (run / "launcher.json").chmod(0o600)
    assert main(["stop", str(run)]) == 0
    assert f"sent SIGTERM to pid {launcher.pid}" in capsys.readouterr().out
    assert launcher.wait(timeout=30) == -signal.SIGTERM


def test_resume_refuses_a_run_whose_launcher_is_alive(tmp_path, processes, capsys):
    run = tmp_path / "live"
    launcher = _launcher(processes, run)
    shutil.copy(REPO / "resources" / "smoke.yaml", run / "config.yaml")
    assert main(["run", "--resume", "-r", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and f"pid {launcher.pid}" in err and "still running" in err
    assert launcher.poll() is None


@pytest.mark.parametrize(
    "cmdline, args",
    [
        (["/venv/bin/python3.12", "-u", "-m", "engine", "run", "-r", "x"], ["run", "-r", "x"]),  # engine_command
        (["/venv/bin/python", "/venv/bin/podium", "run", "--run-dir=x"], ["run", "--run-dir=x"]),  # the script
        (["/Library/Frameworks/Python.framework/Python", "-X", "dev", "main.py"], []),  # a checkout, no args
        (["python", "-c", "import engine", "-m", "engine", "run"], None),
        (["python", "-m", "engine.training.train", "--run-dir", "x"], None),  # a rank, not the launcher
        (["sleep", "100"], None),
    ],
)
def test_a_launcher_is_known_by_how_podium_is_started_and_nothing_else_is(cmdline, args):
    from engine.contract.launcher_record import podium_arguments

    assert podium_arguments(cmdline) == args
