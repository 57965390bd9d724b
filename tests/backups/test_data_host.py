"""The backups role on a data host built by the real redis, mongodb and backups roles, in a
container from the base image (systemd as PID 1), the way molecule runs roles:

- the timer is installed, enabled, next run at 02:00 local time (the host runs in ZONE, not UTC),
  and the time is a variable;
- playbooks/backup.yml takes a backup there; playbooks/restore.yml refuses a corrupt archive
  before it stops anything, and restores a good one. The app and worker units on this host are
  stand-ins (`sleep`), so the test's restore names say so; their reconcile runs in tests/backups/
  test_round_trip.py against the real app;
- the tool is the build phase's bundle (ops/build.py, built here into a temporary artifacts folder),
  installed over what the copy-based install left behind, and runs from its wheel."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.backups import shop
from tests.backups.conftest import ROOT

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
TIMER = "scalemart-backup.timer"
SERVICE = "scalemart-backup.service"
STAND_INS = ("scalemart-app", "scalemart-worker")
BACKUP_DIR = "/var/backups/scalemart"
HOME = "/opt/scalemart-backups"
PY = f"{HOME}/venv/bin/python"
# Not UTC, so a timer evaluated in UTC cannot pass for local time; +05:30 and no DST, so 02:00 local is
# never 02:00 UTC and exists every day (in Europe/Berlin it does not on the last Sunday of March).
ZONE = "Asia/Kolkata"
# Test-only secrets for a throwaway container; real environments take them from the vault.
REDIS_PASSWORD = "data-host-test-redis-" + secrets.token_hex(8)
MONGO_PASSWORD = "data-host-test-mongo-" + secrets.token_hex(8)


@dataclass
class DataHost:
    name: str
    address: str
    work: Path
    artifacts: Path

    def sh(self, *cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", "exec", self.name, *cmd], capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"
        return proc

    def py(self, code: str) -> str:
        """Python in the tool's virtualenv on the host (it has pymongo and redis)."""
        return self.sh(PY, "-c", code, check=True).stdout

    def playbook(self, playbook: str, *extra: str, **hostvars: object) -> subprocess.CompletedProcess[str]:
        inventory = self.work / "inventory.json"
        host = {"ansible_connection": "community.docker.docker", "private_address": self.address}
        inventory.write_text(
            json.dumps(
                {
                    "all": {
                        "vars": {
                            "ansible_python_interpreter": "/usr/bin/python3",
                            "scalemart_environment": "dev",
                            "scalemart_data_dirs": {"backups": BACKUP_DIR},
                            "backups_encryption_key": "data-host-test-" + "k" * 32,
                            "redis_password": REDIS_PASSWORD,
                            "mongodb_password": MONGO_PASSWORD,
                            "redis_appendfsync": "everysec",
                            "redis_maxmemory": "64mb",
                            # what the site wires from the build phase's artifacts
                            # (playbooks/group_vars/all/artifacts.yml)
                            "mongodb_binary_src": str(self.artifacts / "tools" / "bin" / "ferretdb"),
                            "backups_tools_dir": str(self.artifacts / "tools" / "bin"),
                            "backups_release_dir": str(self.artifacts / "backups"),
                            **hostvars,
                        },
                        "children": {group: {"hosts": {self.name: host}} for group in ("data", "app", "worker")},
                    }
                }
            )
        )
        proc = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), playbook, *extra],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=ROOT,
            env={
                "PATH": f"{ROOT / '.venv' / 'bin'}:{ROOT / '.tools' / 'bin'}:/usr/bin:/bin",
                "HOME": str(self.work),
                "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            },
        )
        print(proc.stdout[-8000:], proc.stderr[-3000:])
        return proc

    def converge(self, **hostvars: object) -> subprocess.CompletedProcess[str]:
        converge = self.work / "converge.yml"
        converge.write_text(
            "- name: Converge a data host\n  hosts: data\n  become: true\n  roles:\n"
            "    - role: redis\n    - role: mongodb\n    - role: backups\n"
        )
        return self.playbook(str(converge), **hostvars)


@pytest.fixture(scope="module")
def image() -> str:
    if not (ROOT / "roles" / "backups" / "tasks" / "main.yml").exists():
        pytest.fail(
            "roles/backups is missing: the roles issue adds the `backups` role that installs this package "
            "and scalemart-backup.timer (contract: backups/README.md)"
        )
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run `make bootstrap` (it starts dockerd)")
    image = subprocess.run(
        ["python3", "-c", "from toolchain import image; print(image.tag())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"base image {image} is missing: run `make bootstrap`")
    return image


@pytest.fixture(scope="module")
def artifacts(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the data host's roles install, from the build phase (ops/build.py), outside the repository:
    the tool's bundle (artifacts/backups) and the binaries not in Debian (artifacts/tools)."""
    from ops import build

    root = tmp_path_factory.mktemp("artifacts")
    try:
        for artifact in build.artifacts(image):
            if artifact.name in ("backups", "tools"):
                build.build_one(artifact, root)
    except build.BuildError as exc:
        pytest.fail(f"the build phase failed: {exc}")
    return root


@pytest.fixture(scope="module")
def data_host(image: str, artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataHost]:
    name = f"scalemart-backups-data-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--hostname", "data-1", *SYSTEMD_FLAGS, image],
        check=True,
        capture_output=True,
    )
    try:
        address = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        host = DataHost(name, address, tmp_path_factory.mktemp("data-host"), artifacts)
        deadline = time.monotonic() + 90
        while host.sh("systemctl", "is-system-running").stdout.strip() not in ("running", "degraded"):
            if time.monotonic() > deadline:
                pytest.fail(f"systemd in {name} did not come up: {host.sh('systemctl', '--failed').stdout}")
            time.sleep(1)
        # Before any role runs, the way the common role sets it (a link: timedated needs D-Bus);
        # systemd watches /etc/localtime and re-evaluates its timers on a change.
        host.sh("ln", "-sf", f"/usr/share/zoneinfo/{ZONE}", "/etc/localtime", check=True)
        host.sh("sh", "-c", f"echo {ZONE} > /etc/timezone", check=True)
        yield host
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.fixture(scope="module")
def converged(data_host: DataHost) -> DataHost:
    # What the copy-based install left in backups_home: a source copy (this one fails on import, so a
    # run that picks it up instead of the installed package says so), its wheelhouse, a venv folder.
    data_host.sh("mkdir", "-p", f"{HOME}/backups", f"{HOME}/wheelhouse", f"{HOME}/venv/bin", check=True)
    data_host.sh(
        "sh",
        "-c",
        f"echo 'raise SystemExit(\"the old source copy was imported\")' > {HOME}/backups/__init__.py",
        check=True,
    )
    proc = data_host.converge()
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for unit in STAND_INS:  # stand-ins for the app and worker units the restore playbook stops and starts
        data_host.sh(
            "sh",
            "-c",
            f"printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/{unit}.service",
            check=True,
        )
    data_host.sh("systemctl", "daemon-reload", check=True)
    data_host.sh("systemctl", "start", *STAND_INS, check=True)
    return data_host


def seed(host: DataHost) -> None:
    host.py(f"""
import pymongo, redis
r = redis.Redis(password={REDIS_PASSWORD!r})
m = pymongo.MongoClient("mongodb://scalemart:{MONGO_PASSWORD}@{host.address}:27017/?authSource=admin")
for pid, stocked, sold in (("tee", 50, 3), ("mug", 20, 2)):
    r.hset({shop.store.product_key("")!r} + pid, mapping={{"stock": stocked - sold, "stocked": stocked}})
    r.sadd({shop.store.PRODUCTS!r}, pid)
    r.hset({shop.store.bought_key("")!r} + pid, "ann", sold)
    m.scalemart.orders.insert_many([{{"_id": f"{{pid}}-{{i}}", "product_id": pid, "quantity": 1, "user_id": "ann"}}
                                    for i in range(sold)])
""")


def state(host: DataHost) -> str:
    return host.py(f"""
import json, pymongo, redis
r = redis.Redis(password={REDIS_PASSWORD!r}, decode_responses=True)
m = pymongo.MongoClient("mongodb://scalemart:{MONGO_PASSWORD}@{host.address}:27017/?authSource=admin")
print(json.dumps({{"redis": {{k: r.hgetall(k) if r.type(k) == "hash" else sorted(r.smembers(k))
                             for k in sorted(r.keys())}},
                   "orders": list(m.scalemart.orders.find().sort("_id", 1))}}, sort_keys=True))
""")


def archives(host: DataHost) -> list[str]:
    return sorted(host.sh("sh", "-c", f"cd {BACKUP_DIR} && ls scalemart_backup_*.tar.gz").stdout.split())


def stand_ins_active(host: DataHost) -> list[str]:
    return host.sh("systemctl", "is-active", *STAND_INS).stdout.split()


def test_the_timer_is_installed_and_enabled(converged: DataHost) -> None:
    assert converged.sh("systemctl", "is-enabled", TIMER).stdout.strip() == "enabled"
    assert converged.sh("systemctl", "is-active", TIMER).stdout.strip() == "active"


def test_the_next_run_is_at_0200_local_time(converged: DataHost) -> None:
    assert converged.sh("date", "+%Z").stdout.strip() == "IST", f"the host should run in {ZONE}"
    show = ["systemctl", "show", "-p", "NextElapseUSecRealtime", "--value", TIMER]
    # systemctl prints the instant in its own zone: the host's, then UTC,
    # e.g. "Tue 2026-11-24 02:00:00 IST" and "Mon 2026-11-23 20:30:00 UTC".
    local = converged.sh(*show).stdout.strip()
    in_utc = converged.sh("env", "TZ=UTC", *show).stdout.strip()
    stamp, _, abbrev = local.rpartition(" ")
    nxt = datetime.strptime(stamp, "%a %Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(ZONE))
    assert abbrev == "IST" and (nxt.hour, nxt.minute, nxt.second) == (2, 0, 0), local
    assert in_utc == nxt.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M:%S UTC"), (local, in_utc)
    assert " 02:00:00 " not in in_utc, in_utc
    assert timedelta(0) < nxt - datetime.now(UTC) <= timedelta(days=1), f"not the next 02:00 {ZONE}: {local}"


def test_the_timer_runs_this_package_with_the_installed_config(converged: DataHost) -> None:
    exec_start = converged.sh("systemctl", "show", "-p", "ExecStart", "--value", SERVICE).stdout
    assert "-m backups" in exec_start and "backup" in exec_start, exec_start
    assert converged.sh("stat", "-c", "%a %U", "/etc/scalemart/backups.json").stdout.strip() == "600 root"


def test_the_tool_is_the_bundles_wheel_in_the_current_release(converged: DataHost) -> None:
    bundle = json.loads((converged.artifacts / "backups" / "release.json").read_text())
    release = f"{HOME}/releases/{bundle['release']}"
    site_packages = f"{release}/venv/lib/python{'.'.join(bundle['python'].split('.')[:2])}/site-packages"
    assert converged.sh("readlink", "-f", f"{HOME}/venv").stdout.strip() == f"{release}/venv"
    # From the unit's working directory, and from backups_home, where the old source copy was.
    workdir = converged.sh("systemctl", "show", "-p", "WorkingDirectory", "--value", SERVICE).stdout.strip()
    for cwd in (workdir, HOME):
        out = converged.sh(
            "sh",
            "-c",
            f"cd {cwd} && {PY} -P -c 'import os, backups; "
            "print(os.path.realpath(backups.__file__), backups.__version__)'",
            check=True,
        ).stdout.split()
        assert out == [f"{site_packages}/backups/__init__.py", bundle["version"]], (cwd, out)
    installed = converged.sh("ls", f"{site_packages}/backups", check=True).stdout.split()
    assert {p.name for p in (ROOT / "backups").glob("*.py")} <= set(installed), installed


def test_the_copy_based_install_is_gone(converged: DataHost) -> None:
    assert sorted(converged.sh("ls", HOME, check=True).stdout.split()) == ["releases", "venv"]


def test_the_console_script_runs_the_tool(converged: DataHost) -> None:
    proc = converged.sh(f"{HOME}/venv/bin/scalemart-backups", "--config", "/etc/scalemart/backups.json", "list")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_backup_playbook_takes_a_backup_on_the_data_host(converged: DataHost) -> None:
    seed(converged)
    proc = converged.playbook(str(ROOT / "playbooks" / "backup.yml"))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "backup OK" in proc.stdout
    assert len(archives(converged)) == 1
    prom = converged.sh("cat", "/var/lib/prometheus/node-exporter/scalemart_backup.prom", check=True).stdout
    assert 'scalemart_backup_last_success_timestamp_seconds{kind="mongodb"}' in prom


def test_the_restore_playbook_refuses_a_corrupt_archive_before_stopping_anything(converged: DataHost) -> None:
    [good] = archives(converged)
    # A copy on the control machine with one flipped byte: the playbook uploads it, then refuses it.
    bad = converged.work / "scalemart_backup_dev_20000101_000000.tar.gz"
    for suffix in ("", ".sha256"):
        subprocess.run(
            ["docker", "cp", f"{converged.name}:{BACKUP_DIR}/{good}{suffix}", f"{bad}{suffix}"],
            check=True,
            capture_output=True,
        )
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    before = state(converged)
    try:
        proc = converged.playbook(str(ROOT / "playbooks" / "restore.yml"), "-e", f"archive={bad}")
        assert proc.returncode != 0
        assert "corrupt" in proc.stdout and "nothing was stopped or changed" in proc.stdout
        assert "Ensure the app is stopped" not in proc.stdout
        assert stand_ins_active(converged) == ["active", "active"]
        assert state(converged) == before
    finally:
        converged.sh("rm", "-f", f"{BACKUP_DIR}/{bad.name}", f"{BACKUP_DIR}/{bad.name}.sha256")


def test_the_restore_playbook_restores_with_app_and_worker_stand_ins(converged: DataHost) -> None:
    [archive] = archives(converged)
    before = state(converged)
    converged.py(f"""
import pymongo, redis
redis.Redis(password={REDIS_PASSWORD!r}).flushall()
pymongo.MongoClient("mongodb://scalemart:{MONGO_PASSWORD}@{converged.address}:27017/?authSource=admin").drop_database("scalemart")
""")
    assert state(converged) != before
    proc = converged.playbook(
        str(ROOT / "playbooks" / "restore.yml"),
        "-e",
        f"archive={archive}",
        "-e",
        json.dumps({"backups_reconcile_command": ["/bin/echo", "reconcile stand-in"]}),
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "counts vs manifest: identical" in proc.stdout
    assert state(converged) == before
    assert stand_ins_active(converged) == ["active", "active"]


def test_the_time_is_a_variable(converged: DataHost) -> None:
    proc = converged.converge(backups_time="03:30")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    nxt = converged.sh("systemctl", "show", "-p", "NextElapseUSecRealtime", "--value", TIMER).stdout
    assert " 03:30:00 " in nxt, nxt
