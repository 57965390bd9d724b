"""Back up, destroy, restore: the same orders, the same stock, every Redis key, a clean reconcile."""

from __future__ import annotations

import subprocess
import sys

from tests.backups import shop
from tests.backups.conftest import ROOT, Host


def reconcile(host: Host) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    for line in (host.root / "etc" / "scalemart" / "scalemart.env").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return subprocess.run(
        [sys.executable, "-m", "scalemart", "reconcile"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_backup_destroy_restore_gives_identical_orders_stock_and_a_clean_reconcile(host: Host) -> None:
    r = host.redis.client()
    shop.seed(r, host.db(), products=6, orders=400, queued=9)
    before_redis = shop.redis_state(r)
    before_mongo = shop.mongo_state(host.db())
    before_stock = shop.stock(r)
    assert reconcile(host).returncode == 0, "the seeded data itself must reconcile"

    made = host.run("backup")
    assert made.returncode == 0, made.stderr
    [archive] = host.archives()
    assert archive.with_name(archive.name + ".sha256").exists()
    assert archive.stat().st_mode & 0o777 == 0o600, "the archive holds every order: owner only"

    # destroy
    host.ferret.client().drop_database(host.database)
    r.flushall()
    assert shop.stock(r) == {} and host.db().orders.count_documents({}) == 0

    restored = host.run("restore", archive.name)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "counts vs manifest: identical; reconcile: clean" in restored.stdout
    assert host.hooks_log.read_text().splitlines() == ["stop app worker", "start app worker"]

    assert shop.stock(r) == before_stock
    assert shop.mongo_state(host.db()) == before_mongo
    assert shop.redis_state(r) == before_redis
    check = reconcile(host)
    assert check.returncode == 0 and "clean" in check.stdout, check.stdout


def test_restored_redis_data_survives_a_redis_restart_with_aof_on(host: Host) -> None:
    r = host.redis.client()
    shop.seed(r, host.db(), products=3, orders=50, queued=2)
    before = shop.redis_state(r)
    assert host.run("backup").returncode == 0
    r.flushall()
    assert host.run("restore", host.archives()[0].name).returncode == 0
    # appendonly yes: Redis reloads only its AOF at start; the restored keys must be in it
    host.redis.stop()
    host.redis.start()
    assert shop.redis_state(host.redis.client()) == before


def test_orders_persisted_during_the_dump_are_flagged_and_the_restore_still_reconciles(host: Host) -> None:
    """The app's real worker persists the queued orders right after mongodump (a wrapper runs it),
    i.e. between the Redis snapshot and the counting: the backup must notice, and the restore of
    that archive must still be consistent (the orders are queued again in the restored Redis)."""
    r = host.redis.client()
    shop.seed(r, host.db(), products=3, orders=60, queued=7)
    env_file = host.root / "etc" / "scalemart" / "scalemart.env"
    wrapper = host.root / "mongodump-then-worker"
    wrapper.write_text(f"""#!{sys.executable}
import os, subprocess, sys
rc = subprocess.run([{host.config["mongodump"]!r}, *sys.argv[1:]]).returncode
if rc == 0 and any(a.startswith("--archive=") for a in sys.argv[1:]):
    env = dict(os.environ)
    env.update(line.split("=", 1) for line in open({str(env_file)!r}).read().splitlines() if "=" in line)
    subprocess.run([sys.executable, "-c", "from scalemart.settings import load_settings; "
                    "from scalemart.worker import Worker; Worker(load_settings()).step(block_ms=10)"],
                   env=env, check=True)
sys.exit(rc)
""")
    wrapper.chmod(0o755)
    host.write(mongodump=str(wrapper))

    made = host.run("backup")
    assert made.returncode == 0, made.stderr
    assert "during the dump (7 persisted)" in made.stderr
    assert host.db().orders.count_documents({}) == 67, "the worker really persisted the queued orders"

    host.ferret.client().drop_database(host.database)
    r.flushall()
    restored = host.run("restore", host.archives()[0].name)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "reconcile: clean" in restored.stdout
    assert host.db().orders.count_documents({}) == 60 and r.xlen(shop.store.STREAM) == 7
