"""The house lint of the Python code (STYLE.md: ruff and mypy), run by `make test` as `make lint` runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.toolchain.conftest import ROOT


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_python_lint_is_clean(tool: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *tool], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"`python -m {' '.join(tool)}` (make lint) found problems:\n{proc.stdout}{proc.stderr}"
