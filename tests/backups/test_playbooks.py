"""playbooks/backup.yml and restore.yml parse and pass ansible-lint (production profile)."""

from __future__ import annotations

import subprocess

import pytest

from tests.backups.conftest import ROOT
from toolchain.common import tool_path

PLAYBOOKS = [ROOT / "playbooks" / "backup.yml", ROOT / "playbooks" / "restore.yml"]
ENV = {
    "PATH": tool_path("/usr/bin:/bin"),
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "HOME": "/tmp",
    "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
}


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_syntax(playbook: object) -> None:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_playbooks_pass_ansible_lint() -> None:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-lint"), "--offline", *map(str, PLAYBOOKS)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
