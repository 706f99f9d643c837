"""The boundaries of the design, checked mechanically: import-linter's contracts in pyproject.toml (the engine
never imports Qt or the app; the app never loads torch or the music libraries and imports only engine.contract;
the contract stands alone), and here what only running the imports shows."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.contract

REPO = Path(__file__).resolve().parent.parent
ENGINE_MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "engine").rglob("*.py") if p.stem != "__init__"
)
CONTRACT_MODULES = ["engine.contract"] + sorted(
    info.name for info in pkgutil.walk_packages(engine.contract.__path__, "engine.contract.")
)

BLOCKER = """
import sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block(set(sys.argv[1].split(','))))
import importlib
failed = []
for module in sys.argv[2:]:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        failed.append(f'{module}: {exc}')
print('\\n'.join(failed), file=sys.stderr)
sys.exit(1 if failed else 0)
"""


def _import_with_blocked(blocked: list[str], modules: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(blocked), *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_every_engine_module_imports_without_qt():
    result = _import_with_blocked(["PySide6", "pyqtgraph", "shiboken6", "gui"], ENGINE_MODULES)
    assert result.returncode == 0, result.stderr


def test_every_contract_module_imports_without_torch_or_the_music_libraries():
    assert "engine.contract.events" in CONTRACT_MODULES  # the walk found the package's modules
    result = _import_with_blocked(["torch", "miditok", "music21", "symusic"], CONTRACT_MODULES)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_control_and_checkpoint_listing_cli_run_without_torch(smoke_run):
    code = BLOCKER.replace(
        BLOCKER[BLOCKER.index("import importlib") :],
        "from engine.launcher.cli import main\nsys.exit(main(sys.argv[2:]))\n",
    )
    listed = subprocess.run(
        [sys.executable, "-c", code, "torch,miditok,music21,symusic", "checkpoints", "list", str(smoke_run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "step-0000030" in listed.stdout and "ok" in listed.stdout
