"""A restore refuses a damaged archive or another environment's before it stops or touches anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.backups import shop
from tests.backups.conftest import Host


@pytest.fixture
def backed_up(host: Host) -> tuple[Host, Path]:
    shop.seed(host.redis.client(), host.db(), products=3, orders=120, queued=3)
    assert host.run("backup").returncode == 0
    [archive] = host.archives()
    return host, archive


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def untouched(host: Host, before: tuple[object, object]) -> None:
    assert not host.hooks_log.exists(), "a stop hook ran"
    assert (shop.redis_state(host.redis.client()), shop.mongo_state(host.db())) == before
    assert not list(host.backup_dir.glob(".restore-*")), "the restore left its work dir behind"


@pytest.mark.parametrize("where", ["middle", "last byte (gzip trailer)"])
@pytest.mark.parametrize("sidecar", [True, False], ids=["with sidecar", "without sidecar"])
def test_one_flipped_byte_is_refused_before_anything_is_stopped_or_touched(
    backed_up: tuple[Host, Path], where: str, sidecar: bool
) -> None:
    host, archive = backed_up
    bad = archive
    size = archive.stat().st_size
    flip(bad, size // 2 if where == "middle" else size - 1)
    if not sidecar:
        archive.with_name(archive.name + ".sha256").unlink()
    # the live data differs from the archive: a refused restore must leave it as it is
    host.redis.client().hset("sm:p:p-000", "stock", 4242)
    before = (shop.redis_state(host.redis.client()), shop.mongo_state(host.db()))

    proc = host.run("restore", str(bad))

    assert proc.returncode == 3, proc.stderr
    assert "corrupt" in proc.stderr and "nothing was stopped or changed" in proc.stderr
    untouched(host, before)
    assert host.run("verify", str(bad)).returncode == 3


def test_an_archive_of_another_environment_is_refused_unless_forced(backed_up: tuple[Host, Path]) -> None:
    host, archive = backed_up
    foreign = archive.with_name(archive.name.replace("_dev_", "_staging_"))
    shutil.copy(archive, foreign)
    host.write(environment="staging")  # this host is staging now; the archive says dev inside
    before = (shop.redis_state(host.redis.client()), shop.mongo_state(host.db()))

    proc = host.run("restore", archive.name)
    assert proc.returncode == 4
    assert "taken in environment 'dev', this host is 'staging'" in proc.stderr and "--force" in proc.stderr
    untouched(host, before)

    # forced, and into another database name (staging's), like copying production data to staging
    orders = host.db().orders.count_documents({})
    host.write(mongodb={**host.config["mongodb"], "database": host.database + "_staging"})
    forced = host.run("restore", archive.name, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "restore OK" in forced.stdout
    assert host.ferret.client()[host.database + "_staging"].orders.count_documents({}) == orders


def test_a_stop_hook_that_fails_aborts_the_restore_and_starts_the_services_again(backed_up: tuple[Host, Path]) -> None:
    host, archive = backed_up
    hooks = dict(host.config["hooks"])
    hooks["stop"] = [
        ["sh", "-c", f"echo stop app >> {host.hooks_log}"],
        ["sh", "-c", "echo unit not found >&2; exit 5"],
    ]
    host.write(hooks=hooks)
    host.redis.client().hset("sm:p:p-000", "stock", 4242)
    proc = host.run("restore", archive.name)
    assert proc.returncode == 1
    assert "unit not found" in proc.stderr and "nothing was restored" in proc.stderr
    assert host.hooks_log.read_text().splitlines() == ["stop app", "start app worker"]
    assert host.redis.client().hget("sm:p:p-000", "stock") == "4242"


def test_missing_archive_names_the_list_command(host: Host) -> None:
    proc = host.run("restore", "scalemart_backup_dev_20200101_000000.tar.gz")
    assert proc.returncode == 3
    assert "python -m backups list" in proc.stderr
    assert not host.hooks_log.exists()
