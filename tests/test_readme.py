"""The README's first two commands are the whole set-up; CI lints with that install, then runs the second verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTEST = " && .venv/bin/python -m pytest"


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks]


def _ci_lines() -> list[str]:
    text = (REPO / ".ci" / "run").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command_last():
    first, second = _readme_commands()[:2]
    assert _ci_lines()[-1] == second
    assert first.endswith("main.py") and "torch==2.13.0" in first and "torch==2.13.0" in second
    assert PYTEST in second


def test_ci_lints_with_the_readme_install_before_the_tests():
    second = _readme_commands()[1]
    *before, _ = _ci_lines()
    install = second.split(PYTEST)[0]
    assert install in before, "the linters must run in the environment the README's test command installs"
    linters = before[before.index(install) + 1 :]
    assert linters == [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/lint-imports",
        ".venv/bin/mypy",
    ]
