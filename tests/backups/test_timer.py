"""The `backups` role (roles/, the roles issue) installs this package on a data host as a daily
systemd timer: installed, enabled, next run at 02:00 local time, and the time is a variable.

Runs the role with ansible-playbook in a container from the base image (systemd as PID 1), the
way molecule does, against the contract in backups/README.md."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backups.conftest import ROOT

SYSTEMD_FLAGS = ["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                 "--security-opt", "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
                 "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--cgroupns", "host"]
TIMER = "scalemart-backup.timer"
SERVICE = "scalemart-backup.service"


def sh(container: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not (ROOT / "roles" / "backups" / "tasks" / "main.yml").exists():
        pytest.fail("roles/backups is missing: the roles issue adds the `backups` role that installs this package "
                    "and scalemart-backup.timer (contract: backups/README.md)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run `make bootstrap` (it starts dockerd)")
    image = subprocess.run(["python3", "-c", "from toolchain import image; print(image.tag())"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"base image {image} is missing: run `make bootstrap`")
    name = f"scalemart-backups-timer-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", "data-1", *SYSTEMD_FLAGS, image],
                   check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 90
        while sh(name, "systemctl", "is-system-running").stdout.strip() not in ("running", "degraded"):
            if time.monotonic() > deadline:
                pytest.fail(f"systemd in {name} did not come up: {sh(name, 'systemctl', '--failed').stdout}")
            time.sleep(1)
        yield name, tmp_path_factory.mktemp("timer")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def converge(container: str, work: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                              container], capture_output=True, text=True, check=True).stdout.strip()
    inventory = work / "inventory.json"
    # Test-only secrets for a throwaway container; real environments take them from the vault.
    inventory.write_text(json.dumps({"all": {
        "vars": {"ansible_python_interpreter": "/usr/bin/python3", "scalemart_environment": "dev",
                 "scalemart_data_dirs": {"backups": "/var/backups/scalemart"},
                 "backups_encryption_key": "timer-test-" + secrets.token_hex(16),
                 "redis_password": "timer-test-redis-0123456789", "mongodb_password": "timer-test-mongo-0123456789",
                 **extra},
        "children": {"data": {"hosts": {container: {"ansible_connection": "community.docker.docker",
                                                    "private_address": address}}}}}}))
    playbook = work / "converge.yml"
    playbook.write_text("- name: Converge\n  hosts: data\n  become: true\n  roles:\n    - role: backups\n")
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={"PATH": f"{ROOT / '.venv' / 'bin'}:{ROOT / '.tools' / 'bin'}:/usr/bin:/bin",
                               "HOME": str(work), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                               "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})


@pytest.fixture(scope="module")
def converged(data_host: tuple[str, Path]) -> str:
    container, work = data_host
    proc = converge(container, work)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return container


def test_the_timer_is_installed_and_enabled(converged: str) -> None:
    assert sh(converged, "systemctl", "is-enabled", TIMER).stdout.strip() == "enabled"
    assert sh(converged, "systemctl", "is-active", TIMER).stdout.strip() == "active"


def test_the_next_run_is_at_0200_local_time(converged: str) -> None:
    nxt = sh(converged, "systemctl", "show", "-p", "NextElapseUSecRealtime", "--value", TIMER).stdout.strip()
    local_zone = sh(converged, "date", "+%Z").stdout.strip()
    # systemd prints the next elapse in the host's local time, e.g. "Tue 2026-11-24 02:00:00 UTC"
    assert " 02:00:00 " in f"{nxt} " and nxt.endswith(local_zone), nxt
    listing = sh(converged, "systemctl", "list-timers", "--all", "--no-pager", TIMER).stdout
    assert "02:00:00" in listing, listing


def test_the_timer_runs_this_package_with_the_installed_config(converged: str) -> None:
    exec_start = sh(converged, "systemctl", "show", "-p", "ExecStart", "--value", SERVICE).stdout
    assert "-m backups" in exec_start and "backup" in exec_start, exec_start
    mode = sh(converged, "stat", "-c", "%a %U", "/etc/scalemart/backups.json").stdout.strip()
    assert mode == "600 root", mode


def test_the_time_is_a_variable(data_host: tuple[str, Path], converged: str) -> None:
    container, work = data_host
    proc = converge(container, work, backups_time="03:30")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    nxt = sh(container, "systemctl", "show", "-p", "NextElapseUSecRealtime", "--value", TIMER).stdout
    assert " 03:30:00 " in nxt, nxt
