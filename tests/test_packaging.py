"""Podium installed as a package: the wheel, the podium command from any directory, and a server without Qt."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from engine.contract.commandline import engine_command
from tests.conftest import REPO
from tests.helpers import events_of

SOURCES = ("pyproject.toml", "README.md", "main.py", "engine", "gui", "resources")


def _without_checkout_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: the checkout is not on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(extra)
    return env


def test_podium_version_is_the_installed_distribution(tmp_path):
    out = subprocess.run(engine_command("--version"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"podium {importlib.metadata.version('podium')}"


SERVER = """
import sys
for name in ("PySide6", "pyqtgraph"):
    sys.modules[name] = None  # not installed: a server without the gui extra
from engine.launcher.entry import main
code = main(sys.argv[1:])
assert not any(m == "gui" or m.startswith("gui.") for m in sys.modules), "the app was loaded"
sys.exit(code)
"""


@pytest.mark.slow
def test_a_server_without_the_gui_extra_runs_subcommands_and_is_told_what_the_app_needs(tmp_path):
    smoke = REPO / "resources" / "smoke.yaml"
    validate = subprocess.run(
        [sys.executable, "-c", SERVER, "config", "--validate", str(smoke)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0 and "valid" in validate.stdout, validate.stderr
    for argv in ([], ["--open", str(tmp_path)]):
        app = subprocess.run(
            [sys.executable, "-c", SERVER, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert app.returncode == 2, app.stderr
        assert "pip install 'podium[gui]'" in app.stderr and "PySide6" in app.stderr


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` of a copy of the checkout (the build writes into its source tree), offline."""
    source = tmp_path / "source"
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
        + ["-w", str(dist), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("podium-*.whl")
    return wheel


def _python_files(folder: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts}


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_from_any_directory(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"resources/{p.name}" for p in (REPO / "resources").iterdir() if p.suffix in (".yaml", ".qss")}
    assert shipped <= names, f"resources missing from the wheel: {sorted(shipped - names)}"
    code = _python_files("engine") | _python_files("gui")
    assert code <= names, f"modules missing from the wheel: {sorted(code - names)}"
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"engine", "gui", "resources"}, "no top-level module such as main.py may be installed"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env = _without_checkout_env(QT_QPA_PLATFORM="offscreen")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, env=env, timeout=300
    )
    # The dependencies come from this environment's site-packages, appended as a plain path: its .pth files (the
    # editable install's finder among them) are not run, so only the wheel can provide Podium.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "podium-test-deps.pth").write_text("".join(f"{path}\n" for path in deps))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def podium(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [venv / "bin" / "podium", *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"podium {' '.join(args)}\n{result.stdout}\n{result.stderr}"
        return result

    probe = (
        "import engine, gui, importlib.util; from engine.contract.config import resources_dir; "
        "print(engine.__file__, gui.__file__, resources_dir(), importlib.util.find_spec('main'), sep='\\n')"
    )
    where = subprocess.run(
        [python, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert all(Path(path).is_relative_to(venv) for path in where[:3]), where
    assert where[3] == "None", "a top-level main module is importable"
    resources = Path(where[2])

    version = wheel.name.split("-")[1]
    assert podium("--version").stdout.strip() == f"podium {version}"

    run_dir = elsewhere / "runs" / "installed"
    podium(
        "run", "-c", str(resources / "smoke.yaml"), "-r", "runs/installed", "--nproc", "1", "--set", "run.max_steps=10"
    )
    (end,) = events_of(run_dir, "run_end")
    assert end["reason"] == "finished"
    assert any((run_dir / "checkpoints").iterdir())

    podium("--open", "runs/installed", "--screenshot", "shot.png", "--size", "1200x800")
    width, height = _png_size(elsewhere / "shot.png")
    assert width >= 1200 and height == 800  # the window widens to fit the runs list of ./runs, which holds this run
