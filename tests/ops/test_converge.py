"""Whether a warm `make up` may skip the playbooks (ops/converge.py): only when nothing they depend on
changed, the hosts included."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ops import converge

pytestmark = pytest.mark.docker


@pytest.fixture()
def host(base_image: str) -> Iterator[str]:
    """A throwaway container standing in for one host (its id and start time are what count)."""
    name = f"scalemart-pytest-converge-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--entrypoint", "sleep", base_image, "300"],
        check=True,
        capture_output=True,
    )
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.fixture()
def site(tmp_path: Path, host: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setattr(converge, "BUILD", tmp_path / "build")
    (tmp_path / "build" / "pytest").mkdir(parents=True)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "app": {
                            "hosts": {"app-1": {"ansible_connection": converge.DOCKER_CONNECTION, "ansible_host": host}}
                        }
                    }
                }
            }
        )
    )
    vault = tmp_path / "vault.yml"
    vault.write_text("secret: one\n")
    artifacts = tmp_path / "artifacts"
    (artifacts / "app").mkdir(parents=True)
    (artifacts / "app" / ".inputs").write_text("aaaa\n")
    return {"inventory": inventory, "vault": vault, "artifacts": artifacts}


def _key(site: dict[str, Path]) -> str | None:
    return converge.key("pytest", site["inventory"], site["vault"], site["artifacts"])


def test_an_unchanged_site_is_skipped_after_a_recorded_converge(site: dict[str, Path]) -> None:
    key = _key(site)
    assert key is not None
    assert converge.unchanged("pytest", key) is None, "nothing was converged yet"
    converge.record("pytest", key)
    assert converge.unchanged("pytest", _key(site)), "the same inputs should skip the converge"


@pytest.mark.parametrize("change", ["vault", "artifact", "vars file"])
def test_a_changed_input_converges_again(
    site: dict[str, Path], change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converge.record("pytest", _key(site))
    if change == "vault":
        site["vault"].write_text("secret: two\n")
    elif change == "artifact":
        (site["artifacts"] / "app" / ".inputs").write_text("bbbb\n")
    else:
        extra = tmp_path / "site-vars.yml"
        extra.write_text("alertmanager_recipients: {}\n")
        monkeypatch.setenv("SCALEMART_EXTRA_VARS", str(extra))
    assert converge.unchanged("pytest", _key(site)) is None


def test_a_restarted_host_converges_again(site: dict[str, Path], host: str) -> None:
    converge.record("pytest", _key(site))
    subprocess.run(["docker", "restart", "-t", "0", host], check=True, capture_output=True)
    assert converge.unchanged("pytest", _key(site)) is None


def test_hosts_over_ssh_always_converge(site: dict[str, Path]) -> None:
    site["inventory"].write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {"app": {"hosts": {"app-1": {"ansible_connection": "ssh", "ansible_host": "10.0.0.5"}}}}
                }
            }
        )
    )
    assert _key(site) is None
    converge.record("pytest", None)
    assert converge.unchanged("pytest", None) is None


def test_forget_drops_the_record(site: dict[str, Path]) -> None:
    key = _key(site)
    converge.record("pytest", key)
    converge.forget("pytest")
    assert converge.unchanged("pytest", key) is None
