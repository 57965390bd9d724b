"""Retention runs only after a successful backup; a failed backup deletes nothing and says so."""

from __future__ import annotations

import fcntl
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.backups import servers, shop
from tests.backups.conftest import Host


def fake_archive(host: Host, days_back: float, env: str = "dev") -> Path:
    when = datetime.now(UTC) - timedelta(days=days_back)
    path = host.backup_dir / f"scalemart_backup_{env}_{when:%Y%m%d_%H%M%S}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"an older archive")
    path.with_name(path.name + ".sha256").write_text(f"{'0' * 64}  {path.name}\n")
    return path


def leftovers(host: Host) -> list[Path]:
    return [
        p
        for p in host.backup_dir.iterdir()
        if p.name.startswith((".staging-", ".restore-")) or p.name.endswith(".partial")
    ]


def test_a_new_backup_removes_only_the_archive_older_than_30_days(host: Host) -> None:
    shop.seed(host.redis.client(), host.db(), products=2, orders=30, queued=0)
    old31, old29 = fake_archive(host, 31), fake_archive(host, 29)
    today = fake_archive(host, 0.01)
    other_env = fake_archive(host, 31, env="staging")

    proc = host.run("backup")

    assert proc.returncode == 0, proc.stderr
    assert not old31.exists() and not old31.with_name(old31.name + ".sha256").exists()
    assert f"retention: removed {old31.name} (31 days old" in proc.stdout
    new = [p for p in host.archives() if p not in (old29, today, other_env)]
    assert len(new) == 1 and old29.exists() and today.exists()
    assert other_env.exists(), "another environment's archive is not this environment's retention"
    metrics = host.metrics()
    assert metrics["scalemart_backup_pruned_archives_total"] == 1
    assert metrics["scalemart_backup_archives"] == 3


@pytest.mark.parametrize(
    "breakage", ["mongodb unreachable", "redis password wrong", "encryption key missing", "config path missing"]
)
def test_a_failed_backup_leaves_the_previous_archives_alone_and_exits_non_zero(host: Host, breakage: str) -> None:
    shop.seed(host.redis.client(), host.db(), products=2, orders=30, queued=0)
    assert host.run("backup").returncode == 0
    good = host.archives()
    success_before = host.metrics()['scalemart_backup_last_success_timestamp_seconds{kind="mongodb"}']
    old = fake_archive(host, 40)
    if breakage == "mongodb unreachable":
        host.write(mongodb={**host.config["mongodb"], "uri": f"mongodb://127.0.0.1:{servers.free_port()}/"})
    elif breakage == "redis password wrong":
        host.write(redis={**host.config["redis"], "password": "not-the-password"})
    elif breakage == "encryption key missing":
        Path(host.config["encryption_key_file"]).unlink()
    else:
        host.write(config_paths=[*host.config["config_paths"], "/etc/scalemart-not-there"])

    proc = host.run("backup")

    assert proc.returncode == 1
    assert "backup FAILED" in proc.stderr and "previous archives" in proc.stderr
    assert sorted(host.archives()) == sorted([*good, old]), "a failed backup must not prune or add archives"
    assert not leftovers(host)
    metrics = host.metrics()
    assert metrics["scalemart_backup_last_run_success"] == 0
    assert metrics["scalemart_backup_failures_total"] == 1
    assert metrics['scalemart_backup_last_success_timestamp_seconds{kind="mongodb"}'] == success_before


def test_off_site_copy_runs_after_success_with_cp_as_the_upload_command(host: Host, tmp_path: Path) -> None:
    shop.seed(host.redis.client(), host.db(), products=2, orders=30, queued=0)
    remote = tmp_path / "offsite"
    remote.mkdir()
    host.write(offsite_command=["cp", "{archive}", "{sidecar}", str(remote)])
    proc = host.run("backup")
    assert proc.returncode == 0, proc.stderr
    [archive] = host.archives()
    assert (remote / archive.name).read_bytes() == archive.read_bytes()
    check = subprocess.run(["sha256sum", "-c", archive.name + ".sha256"], cwd=remote, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    metrics = host.metrics()
    assert metrics["scalemart_backup_offsite_uploads_total"] == 1
    assert metrics["scalemart_backup_offsite_failures_total"] == 0


def test_a_failing_off_site_copy_is_reported_counted_and_exits_6_but_keeps_the_backup(host: Host) -> None:
    shop.seed(host.redis.client(), host.db(), products=2, orders=30, queued=0)
    host.write(offsite_command=["sh", "-c", "echo 'AccessDenied: bucket scalemart-backups' >&2; exit 1", "{archive}"])
    proc = host.run("backup")
    assert proc.returncode == 6
    assert "off-site copy FAILED (exit 1)" in proc.stderr and "AccessDenied" in proc.stderr
    assert len(host.archives()) == 1
    metrics = host.metrics()
    assert metrics["scalemart_backup_offsite_failures_total"] == 1
    assert metrics["scalemart_backup_last_run_success"] == 1
    assert metrics['scalemart_backup_last_success_timestamp_seconds{kind="redis"}'] > 0


def test_the_textfile_is_valid_for_node_exporter_and_feeds_backup_too_old(host: Host) -> None:
    shop.seed(host.redis.client(), host.db(), products=2, orders=30, queued=0)
    assert host.run("backup").returncode == 0
    text = host.textfile.read_text()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    metrics = host.metrics()
    now = datetime.now(UTC).timestamp()
    for kind in ("mongodb", "redis", "config"):
        assert now - 120 < metrics[f'scalemart_backup_last_success_timestamp_seconds{{kind="{kind}"}}'] <= now
    assert metrics['scalemart_backup_last_size_bytes{kind="archive"}'] == host.archives()[0].stat().st_size
    assert metrics["scalemart_backup_last_duration_seconds"] > 0
    assert metrics["scalemart_backup_last_orders"] == 30
    assert "env=" not in text, "Prometheus adds env per target; a textfile env label would clash"


def test_prune_alone_refuses_without_a_recent_verified_archive(host: Host) -> None:
    old = fake_archive(host, 45)
    proc = host.run("prune")
    assert proc.returncode == 1 and "take a backup first" in proc.stderr
    assert old.exists()


def test_a_second_run_while_one_holds_the_lock_exits_7_and_changes_nothing(host: Host) -> None:
    host.backup_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.backup_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"4242", 0)
        proc = host.run("backup")
    finally:
        os.close(fd)
    assert proc.returncode == 7 and "pid 4242" in proc.stderr
    assert host.archives() == []


def test_list_shows_age_size_and_what_expires(host: Host) -> None:
    fake_archive(host, 31)
    fake_archive(host, 2)
    fake_archive(host, 1, env="staging")
    proc = host.run("list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert "expires at the next backup" in lines[0] and "31.0 days" in lines[0]
    assert "(other environment)" in next(line for line in lines if "_staging_" in line)
