"""Every role's molecule scenario: create, converge, idempotence (changed=0), side effects, testinfra verify.

Scenarios run one after another (the box has 2 shared cores; a systemd container per scenario).
`molecule test` fails on any step; the failure shows the tail of its output, including the
`journalctl -u` that the verifier prints for a failing service.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.roles.conftest import ROOT, SCENARIOS, plain, tail, tool_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def molecule_test(scenario: str, base_image: str, artifacts: Path, roles_copy: Path, venv_tool, tmp_path: Path) -> None:
    cmd = [venv_tool("molecule"), "-c", "molecule/config.yml", "test", "-s", scenario, "--no-report"]
    # Own container name and state folder: a manual `molecule test -s <scenario>` running at the
    # same time (several engineers share this box) must not destroy this run's instance.
    env = {
        **tool_env(),
        "SCALEMART_BASE_IMAGE": base_image,
        "SCALEMART_MOLECULE_RUN": f"pytest{os.getpid()}",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        # Roles alone, away from the repository, with the artifacts of one build phase.
        "SCALEMART_ROLES_PATH": str(roles_copy),
        "SCALEMART_ARTIFACTS": str(artifacts),
    }
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        subprocess.run(
            [venv_tool("molecule"), "-c", "molecule/config.yml", "destroy", "-s", scenario],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"molecule test -s {scenario} took more than 900 s:\n{tail(out)}")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (rc={proc.returncode}):\n{tail(output)}"
    text = plain(output)
    assert "idempotence" in text, f"scenario {scenario} ran no idempotence step"
    assert " passed" in text, f"scenario {scenario} ran no testinfra test"


def _scenario_class(scenario: str) -> type:
    def test_molecule_scenario(
        self: object, base_image: str, artifacts: Path, roles_copy: Path, venv_tool, tmp_path: Path
    ) -> None:
        molecule_test(scenario, base_image, artifacts, roles_copy, venv_tool, tmp_path)

    return type(f"TestScenario_{scenario}", (), {"test_molecule_scenario": test_molecule_scenario})


# One class per scenario: `make test` spreads its workers by module and class (--dist loadscope), so
# the scenarios run two at a time while every other file keeps its tests together on one worker.
for _scenario in SCENARIOS:
    globals()[f"TestScenario_{_scenario}"] = _scenario_class(_scenario)
