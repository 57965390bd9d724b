"""Every role has a molecule scenario that applies it and verifies it with testinfra, and every
scenario belongs to a role: a new role cannot land untested, nor a scenario outlive its role.

test_molecule.py runs whatever molecule/*/molecule.yml it finds; this file makes sure that is all of roles/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.roles.conftest import ROOT

# Folders under molecule/ that are not scenarios.
NOT_SCENARIOS = {"shared"}


def folders(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


ROLE_DIRS = folders(ROOT / "roles")
SCENARIO_DIRS = [name for name in folders(ROOT / "molecule") if name not in NOT_SCENARIOS]


def applied_roles(playbook: Path) -> set[str]:
    """Roles a playbook applies, from `roles:` and from include_role/import_role tasks."""
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "roles":
                    names.update(r if isinstance(r, str) else r.get("role", r.get("name")) for r in value)
                elif key.rsplit(".", 1)[-1] in ("include_role", "import_role"):
                    names.add(value["name"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(playbook.read_text()))
    return names


def test_roles_and_scenarios_are_found() -> None:
    assert len(ROLE_DIRS) >= 11 and len(SCENARIO_DIRS) >= 11, (ROLE_DIRS, SCENARIO_DIRS)


def test_every_role_has_a_scenario() -> None:
    missing = sorted(set(ROLE_DIRS) - set(SCENARIO_DIRS))
    assert not missing, (
        f"roles without a molecule scenario: {missing}; add molecule/<role>/ with molecule.yml, "
        "converge.yml and tests/test_<role>.py (see molecule/README.md)"
    )


def test_every_scenario_has_a_role() -> None:
    orphans = sorted(set(SCENARIO_DIRS) - set(ROLE_DIRS))
    assert not orphans, (
        f"molecule scenarios without a role under roles/: {orphans}; remove them, "
        f"or add to NOT_SCENARIOS in {Path(__file__).name} if the folder is not a scenario"
    )


@pytest.mark.parametrize("scenario", SCENARIO_DIRS)
def test_scenario_is_complete(scenario: str) -> None:
    base = ROOT / "molecule" / scenario
    # test_molecule.py collects scenarios by this file; without it the scenario never runs.
    assert (base / "molecule.yml").is_file(), f"molecule/{scenario}/molecule.yml is missing"
    assert (base / "converge.yml").is_file(), f"molecule/{scenario}/converge.yml is missing"
    assert scenario in applied_roles(base / "converge.yml"), f"molecule/{scenario}/converge.yml does not apply it"
    tests = [p.name for p in (base / "tests").glob("test_*.py")]
    assert tests, f"molecule/{scenario}/tests/ has no test_*.py: testinfra would verify nothing"
