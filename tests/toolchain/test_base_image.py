"""Containers from the base image run systemd and are reachable by Ansible."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.toolchain.conftest import ROOT

SYSTEMD_FLAGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--tmpfs",
    "/tmp",
    "--cgroupns",
    "host",
]


@pytest.fixture(scope="module")
def host(base_image: str) -> Iterator[str]:
    name = f"toolchain-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, *SYSTEMD_FLAGS, base_image], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_systemd_reaches_running(host: str) -> None:
    state = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "exec", host, "systemctl", "is-system-running"], capture_output=True, text=True
        ).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    failed = subprocess.run(
        ["docker", "exec", host, "systemctl", "--failed", "--no-legend"], capture_output=True, text=True
    ).stdout
    assert state == "running", f"systemd state is {state!r}; failed units:\n{failed}"


def test_host_trusts_the_control_machines_cas(host: str) -> None:
    bundle = subprocess.run(
        ["docker", "exec", host, "cat", "/etc/ssl/certs/ca-certificates.crt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    control = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    first = control.split("-----END CERTIFICATE-----")[0].split("-----BEGIN CERTIFICATE-----")[1]
    assert first.strip() in bundle


def test_ansible_ping_over_the_docker_connection(host: str, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        host: {
                            "ansible_connection": "community.docker.docker",
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    }
                }
            }
        )
    )
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible"), "-i", str(inventory), host, "-m", "ping"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"ping": "pong"' in proc.stdout
