"""ansible-lint (production profile) and yamllint over roles, playbooks and molecule scenarios."""

from __future__ import annotations

import subprocess

from tests.roles.conftest import ROOT, tail, tool_env

PATHS = ["roles", "playbooks", "molecule"]


def test_yamllint_is_clean(venv_tool) -> None:
    proc = subprocess.run(
        [venv_tool("yamllint"), "--strict", "-c", ".yamllint", *PATHS, ".yamllint", ".ansible-lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile_is_clean(venv_tool) -> None:
    proc = subprocess.run(
        [venv_tool("ansible-lint"), "--profile", "production", "--nocolor", *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=600,
    )
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr, 200)
