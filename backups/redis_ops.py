"""Redis: a consistent snapshot (BGSAVE, wait, copy the RDB) and its restore.

The restore replays the snapshot into the running server key by key (DUMP on a scratch
redis-server that loaded the RDB, RESTORE on the live one) instead of swapping files under a
stopped server. With `appendonly yes` (the redis role's default) Redis 7 loads only its AOF
directory at start and ignores dump.rdb; a swapped dump.rdb would be silently replaced by an
empty dataset. Replaying through the live server writes every key to its AOF as well, and a
final BGREWRITEAOF compacts it: the restored data survives the next restart either way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from backups.config import Layout, RedisConfig

BATCH = 1000


class RedisBackupError(Exception):
    pass


def client(cfg: RedisConfig, db: int = 0) -> redis.Redis:
    return redis.Redis(
        host=cfg.host, port=cfg.port, password=cfg.password or None, db=db, socket_connect_timeout=5, socket_timeout=120
    )


def scratch_client(sock: Path, db: int = 0) -> redis.Redis:
    # No retries: redis-py's default backoff would sleep seconds while the server starts or stops.
    return redis.Redis(unix_socket_path=str(sock), db=db, retry=Retry(NoBackoff(), 0), socket_timeout=120)


def check(r: redis.Redis, cfg: RedisConfig) -> None:
    try:
        r.ping()
    except redis.exceptions.AuthenticationError as err:
        raise RedisBackupError(f"redis.password: Redis at {cfg.host}:{cfg.port} refused it ({err})") from None
    except (redis.exceptions.ConnectionError, OSError) as err:
        raise RedisBackupError(
            f"redis: nothing answers at {cfg.host}:{cfg.port} ({err}); is redis-server running "
            "(`systemctl status redis-server`)?"
        ) from None


def _persistence(r: redis.Redis) -> dict[str, object]:
    return dict(r.info("persistence"))


def bgsave_and_wait(r: redis.Redis, timeout: float) -> float:
    """Start a BGSAVE (retrying while another save or an AOF rewrite runs) and wait until it is done.

    Returns the server's LASTSAVE of the finished snapshot."""
    deadline = time.monotonic() + timeout
    started = int(r.lastsave().timestamp())
    saves_before = int(_persistence(r).get("rdb_saves", -1))  # type: ignore[call-overload]
    while True:
        try:
            r.bgsave()
            break
        except redis.exceptions.ResponseError as err:
            # another save or an AOF rewrite holds the fork; ours must start after it
            if "in progress" not in str(err) or time.monotonic() > deadline:
                raise RedisBackupError(f"redis: BGSAVE refused: {err}") from None
            time.sleep(0.2)
    while True:
        info = _persistence(r)
        saves = int(info.get("rdb_saves", -1))  # type: ignore[call-overload]
        done = not info.get("rdb_bgsave_in_progress") and (
            saves > saves_before if saves_before >= 0 else int(info.get("rdb_last_save_time", 0)) >= started  # type: ignore[call-overload]
        )
        if done:
            if info.get("rdb_last_bgsave_status") != "ok":
                raise RedisBackupError(
                    "redis: the BGSAVE failed (rdb_last_bgsave_status is "
                    f"{info.get('rdb_last_bgsave_status')}); see `journalctl -u redis-server` "
                    "(disk full? permissions on the data dir?)"
                )
            return float(info.get("rdb_last_save_time", time.time()))  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise RedisBackupError(
                f"redis: the BGSAVE did not finish within {timeout:.0f} s (raise redis.bgsave_timeout_seconds)"
            )
        time.sleep(0.1)


def rdb_path(r: redis.Redis, cfg: RedisConfig) -> Path:
    if cfg.rdb_path:
        return Path(cfg.rdb_path)
    try:
        directory = str(r.config_get("dir")["dir"])
        name = str(r.config_get("dbfilename")["dbfilename"])
    except redis.exceptions.ResponseError as err:
        raise RedisBackupError(
            f"redis: CONFIG GET is not allowed ({err}); set redis.rdb_path to the server's "
            "dir/dbfilename, e.g. /var/lib/redis/dump.rdb"
        ) from None
    return Path(directory) / name


def snapshot(cfg: RedisConfig, dest: Path) -> dict[str, object]:
    """Write a consistent RDB of the live server to dest; return facts for the manifest."""
    r = client(cfg)
    check(r, cfg)
    source = rdb_path(r, cfg)
    saved_at = bgsave_and_wait(r, cfg.bgsave_timeout_seconds)
    # An automatic save may replace the file now; Redis renames a finished temp file over it,
    # so the copy is always one whole snapshot, never a mix.
    try:
        shutil.copyfile(source, dest)
    except OSError as err:
        raise RedisBackupError(
            f"redis: cannot copy the snapshot {source} ({err.strerror}); run the backup as root "
            "on the data host, or set redis.rdb_path"
        ) from None
    server = r.info("server")
    return {
        "redis_version": server.get("redis_version", "?"),
        "snapshot_time": saved_at,
        "appendonly": r.config_get("appendonly").get("appendonly", "?"),
        "source": str(source),
    }


@contextlib.contextmanager
def scratch_server(binary: str, rdb: Path, timeout: float = 600) -> Iterator[Path]:
    """A private redis-server on a unix socket that has loaded `rdb`; yields the socket path."""
    if not shutil.which(binary):
        raise RedisBackupError(
            f"redis_server: {binary} not found; install redis-server on this host or set redis_server in the config"
        )
    with tempfile.TemporaryDirectory(prefix="scalemart-scratch-redis-") as tmp:
        work = Path(tmp)
        try:
            os.link(rdb, work / "dump.rdb")
        except OSError:  # another file system: copy instead
            shutil.copyfile(rdb, work / "dump.rdb")
        sock = work / "redis.sock"
        log = work / "redis.log"
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(work),
                "--dbfilename",
                "dump.rdb",
                "--appendonly",
                "no",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(log),
                "--databases",
                "64",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RedisBackupError(
                        f"redis: the snapshot does not load (scratch redis-server exited {proc.returncode}):\n{tail}"
                    )
                try:
                    if sock.exists() and scratch_client(sock).ping():
                        break
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RedisBackupError(f"redis: the scratch server did not load the snapshot in {timeout:.0f} s")
                time.sleep(0.05)
            yield sock
        finally:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                scratch_client(sock).shutdown(nosave=True)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def keyspace(r: redis.Redis) -> dict[int, int]:
    return {int(name[2:]): int(v["keys"]) for name, v in r.info("keyspace").items() if name.startswith("db")}


def stock(r: redis.Redis, layout: Layout) -> dict[str, int]:
    """Stock per product in the app's layout: hash <prefix><product id>, field <stock_field>."""
    prefix = layout.product_key_prefix
    keys = sorted(r.scan_iter(match=prefix.replace("*", r"\*") + "*", count=BATCH, _type="hash"))
    out: dict[str, int] = {}
    for i in range(0, len(keys), BATCH):
        chunk = keys[i : i + BATCH]
        pipe = r.pipeline(transaction=False)
        for key in chunk:
            pipe.hget(key, layout.stock_field)
        for key, value in zip(chunk, pipe.execute(), strict=True):
            product = key.decode()[len(prefix) :]
            if value is not None and ":" not in product:
                out[product] = int(value)
    return out


def queue_signature(cfg: RedisConfig, layout: Layout) -> tuple[int, int, str] | None:
    """(length, entries ever added, last id) of the order queue: unchanged across the dump means
    no order was bought or persisted meanwhile, so the dump and the counts agree exactly."""
    try:
        info = client(cfg).xinfo_stream(layout.orders_stream)
    except redis.exceptions.ResponseError:  # no queue yet
        return None
    last = info.get("last-generated-id", b"")
    return (
        int(info.get("length", 0)),
        int(info.get("entries-added", -1)),
        last.decode() if isinstance(last, bytes) else str(last),
    )


def snapshot_facts(binary: str, rdb: Path, layout: Layout) -> dict[str, object]:
    """Load the copied RDB in a scratch server: proves it is readable and counts what the manifest needs."""
    with scratch_server(binary, rdb) as sock:
        r = scratch_client(sock)
        return {"keys_per_db": {str(db): n for db, n in keyspace(r).items()}, "stock_per_product": stock(r, layout)}


def restore(cfg: RedisConfig, binary: str, rdb: Path) -> int:
    """Replace the live dataset with the snapshot; returns the number of keys restored."""
    live = client(cfg)
    check(live, cfg)
    with scratch_server(binary, rdb) as sock:
        src_dbs = keyspace(scratch_client(sock))
        live.flushall()
        restored: dict[str, int] = {}
        for db, _count in sorted(src_dbs.items()):
            src = scratch_client(sock, db)
            dst = client(cfg, db)
            n = 0
            batch: list[bytes] = []
            for key in src.scan_iter(count=BATCH):
                batch.append(key)
                if len(batch) >= BATCH:
                    n += _copy(src, dst, batch)
                    batch = []
            n += _copy(src, dst, batch)
            restored[str(db)] = n
    if live.config_get("appendonly").get("appendonly") == "yes":
        _rewrite_aof(live, cfg.bgsave_timeout_seconds)
    return sum(restored.values())


def _copy(src: redis.Redis, dst: redis.Redis, keys: list[bytes]) -> int:
    if not keys:
        return 0
    pipe = src.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    answers = pipe.execute()
    out = dst.pipeline(transaction=False)
    n = 0
    for key, payload, ttl in zip(keys, answers[0::2], answers[1::2], strict=True):
        if payload is None or ttl == -2:  # expired since the scan
            continue
        out.restore(key, max(int(ttl), 0), payload, replace=True)
        n += 1
    out.execute()
    return n


def _rewrite_aof(r: redis.Redis, timeout: float) -> None:
    # The AOF now holds FLUSHALL + one RESTORE per key; a rewrite turns it into a compact base.
    deadline = time.monotonic() + timeout
    while True:
        try:
            r.bgrewriteaof()
            break
        except redis.exceptions.ResponseError as err:
            if time.monotonic() > deadline:
                raise RedisBackupError(f"redis: BGREWRITEAOF refused: {err}") from None
            time.sleep(0.2)
    while True:
        info = _persistence(r)
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise RedisBackupError(
                    "redis: the AOF rewrite after the restore failed; see `journalctl -u "
                    "redis-server`; the data is restored in memory, run BGREWRITEAOF again"
                )
            return
        if time.monotonic() > deadline:
            raise RedisBackupError(f"redis: the AOF rewrite did not finish within {timeout:.0f} s")
        time.sleep(0.1)
