"""Shared test set-up: offscreen Qt, one data cache and one finished smoke run per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.contract.commandline import engine_command

# Without this a display-less QApplication aborts the whole test process.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "resources" / "smoke.yaml"


@pytest.fixture(scope="session", autouse=True)
def podium_cache(tmp_path_factory) -> Path:
    """One prepared-data cache for every test and every engine process they start."""
    cache = Path(os.environ.get("PODIUM_TEST_CACHE") or tmp_path_factory.mktemp("podium-cache"))
    os.environ["PODIUM_CACHE_DIR"] = str(cache)
    return cache


def podium(*args: str, timeout: float = 300, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run ``podium ARGS`` as a user would, capturing its output."""
    result = subprocess.run(
        engine_command(*args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podium {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, podium_cache) -> Path:
    """A finished 2-rank CPU run of resources/smoke.yaml, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    podium("run", "-c", str(SMOKE), "-r", str(run_dir), "--nproc", "2", check=True)
    return run_dir


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 (tests/sshd.py), for the remote-workspace tests."""
    from tests.sshd import SshServer, sshd_available

    if not sshd_available():
        pytest.skip("openssh-server is not installed (.ci/run installs it)")
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(sshd, monkeypatch):
    """This test's user: the throwaway HOME whose ~/.ssh trusts the server."""
    monkeypatch.setenv("HOME", str(sshd.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    sshd.trust()
    return sshd
