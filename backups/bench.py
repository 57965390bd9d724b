"""Backup and restore times for N orders, on loopback servers started here (control machine only).

    .venv/bin/python backups/bench.py --orders 100000

redis-server (the redis role's persistence settings: AOF on, fsync always) and FerretDB
(SQLite, SCRAM auth) run in a temp dir; the shop data is written in the app's layout
(tests/backups/shop.py): products, orders in MongoDB, stock, per-user counters and one
idempotency key per order in Redis, a few orders still queued. Then one backup and one restore
(after FLUSHALL and dropping the database) through the real CLI. The servers and the tool share
this machine's cores; say so next to any figure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.backups import servers, shop  # noqa: E402


def run(config: Path, *args: str) -> tuple[float, str]:
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "backups", "--config", str(config), *args], cwd=ROOT, capture_output=True, text=True
    )
    took = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(
            f"`python -m backups {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return took, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--queued", type=int, default=50, help="orders left in the Redis queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scalemart-backup-bench-") as tmp:
        work = Path(tmp)
        with (
            servers.redis_server(work / "redis", "bench-" + secrets.token_hex(8)) as rs,
            servers.ferretdb(work / "ferretdb", "scalemart", "bench-" + secrets.token_hex(8)) as fd,
        ):
            db = fd.client()["scalemart"]
            t = time.monotonic()
            shop.seed(rs.client(), db, products=args.products, orders=args.orders, queued=args.queued)
            seeded = time.monotonic() - t
            key = work / "backups.key"
            key.write_text(secrets.token_urlsafe(36))
            config = work / "backups.json"
            fd_ = os.open(config, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd_, "w") as fh:
                json.dump(
                    {
                        "environment": "dev",
                        "encryption_key_file": str(key),
                        "backup_dir": str(work / "backups"),
                        "config_paths": [str(rs.conf)],
                        "textfile_path": None,
                        "mongodump": servers.tool("mongodump"),
                        "mongorestore": servers.tool("mongorestore"),
                        "redis_server": servers.redis_binary(),
                        "mongodb": {
                            "uri": fd.bare_url,
                            "database": "scalemart",
                            "username": fd.username,
                            "password": fd.password,
                        },
                        "redis": {"port": rs.port, "password": rs.password},
                    },
                    fh,
                )
            stock = shop.stock(rs.client())
            backup_s, out = run(config, "backup")
            [archive] = sorted((work / "backups").glob("*.tar.gz"))
            manifest = subprocess.run(
                ["tar", "-xzOf", str(archive), "manifest.json"], capture_output=True, check=True
            ).stdout
            facts = json.loads(manifest)
            rs.client().flushall()
            fd.client().drop_database("scalemart")
            restore_s, out = run(config, "restore", archive.name)
            assert shop.stock(rs.client()) == stock
            assert db.orders.count_documents({}) == args.orders
            keys = sum(facts["redis"]["keys_per_db"].values())
            print(
                f"orders {args.orders} in {args.products} products (+{args.queued} queued), redis keys {keys}; "
                f"seeding took {seeded:.1f} s"
            )
            print(
                f"backup : {backup_s:6.1f} s  (redis snapshot+check {facts['redis']['seconds']:.1f} s, "
                f"mongodump {facts['mongodb']['dump_seconds']:.1f} s + count scan, "
                f"together {facts['mongodb']['seconds']:.1f} s), "
                f"archive {archive.stat().st_size / 1e6:.1f} MB"
            )
            mongo_line = next((line for line in out.splitlines() if line.strip().startswith("done in")), "")
            redis_line = next((line for line in out.splitlines() if "keys (AOF rewritten)" in line), "")
            print(
                f"restore: {restore_s:6.1f} s  (mongodb: {mongo_line.strip()}; redis: {redis_line.strip()}), "
                "counts identical, reconcile not run (no app here)"
            )
            print(f"machine: {os.cpu_count()} cores shared by the tool, redis-server and FerretDB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
