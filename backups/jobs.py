"""backup, prune, verify and restore: the steps, their order, and what each failure leaves behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cryptography
import pymongo
import redis

from backups import __version__, archive, bundle, metrics, mongo_ops, redis_ops
from backups.config import Config, ConfigError

# Exit codes (the role's unit, the playbooks and the tests rely on them; see README.md).
OK = 0
FAILED = 1
USAGE = 2
CORRUPT = 3
WRONG_ENV = 4
MISMATCH = 5
OFFSITE_FAILED = 6
BUSY = 7

STEP_ERRORS = (
    mongo_ops.MongoBackupError,
    redis_ops.RedisBackupError,
    bundle.BundleError,
    ConfigError,
    redis.exceptions.RedisError,
    pymongo.errors.PyMongoError,
    subprocess.SubprocessError,
    OSError,
)


class Busy(Exception):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(cfg: Config) -> Iterator[None]:
    """One backup or restore at a time per host (the timer may fire during a manual run)."""
    cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(cfg.backup_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise Busy(
                f"another backup or restore is running (pid {holder or '?'}); wait for it "
                "(`systemctl status scalemart-backup.service`)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def publish(cfg: Config, state: dict[str, Any]) -> None:
    metrics.save_state(cfg.backup_dir, state)
    entries = archive.listing(cfg.backup_dir, cfg.environment)
    size = sum(e.path.stat().st_size for e in entries if e.path.exists())
    metrics.write_textfile(cfg.textfile_path, metrics.render(state, len(entries), size))


# ---------------------------------------------------------------- backup


@dataclass
class BackupResult:
    code: int
    archive: Path | None = None
    pruned: list[Path] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0


def backup(cfg: Config, now: datetime | None = None) -> BackupResult:
    started = now or datetime.now(UTC)
    t0 = time.monotonic()
    with locked(cfg):
        state = metrics.load_state(cfg.backup_dir)
        metrics.bump(state, "backup_runs")
        dest = cfg.backup_dir / archive.name_for(cfg.environment, started)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cfg.backup_dir))
        try:
            manifest = _take(cfg, staging, started)
            if dest.exists():
                raise FileExistsError(f"{dest.name} already exists: two backups in the same second; run it again")
            digest, manifest = archive.write(dest, staging, manifest)
        except STEP_ERRORS as err:
            duration = time.monotonic() - t0
            metrics.bump(state, "backup_failures")
            state["last_run"] = {"finished": time.time(), "ok": False, "error": str(err)[:500]}
            publish(cfg, state)
            warn(f"backup FAILED after {duration:.1f} s: {err}")
            warn(f"the previous archives in {cfg.backup_dir} are untouched")
            return BackupResult(FAILED, duration=duration)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        duration = time.monotonic() - t0
        size = dest.stat().st_size
        files = manifest["files"]
        state["last_success"] = {
            "finished": time.time(),
            "duration_seconds": duration,
            "archive": dest.name,
            "archive_bytes": size,
            "sha256": digest,
            "orders": manifest["counts"]["orders_total"],
            "sizes": {
                "mongodb": files[archive.MONGO]["size"],
                "redis": files[archive.REDIS]["size"],
                "config": files[archive.CONFIG]["size"],
            },
        }
        state["last_run"] = {"finished": time.time(), "ok": True}
        say(
            f"backup OK: {dest} ({size / 1e6:.1f} MB, {manifest['counts']['orders_total']} orders, "
            f"{len(manifest['counts']['stock_per_product'])} products) in {duration:.1f} s"
        )
        # Retention runs only now, after the new archive is safely on disk.
        pruned = prune_old(cfg, keep=dest, now=started)
        metrics.bump(state, "backup_pruned_archives", len(pruned))
        code = OK
        if cfg.offsite_command:
            metrics.bump(state, "backup_offsite_uploads")
            if offsite(cfg, dest):
                state["offsite_last_success"] = time.time()
            else:
                metrics.bump(state, "backup_offsite_failures")
                code = OFFSITE_FAILED
        publish(cfg, state)
        return BackupResult(code, dest, pruned, manifest, duration)


def _take(cfg: Config, staging: Path, started: datetime) -> dict[str, Any]:
    # Fail on a missing key before the slow steps, not after them.
    key = cfg.encryption_key()
    mongo_server = mongo_ops.ping(cfg.mongodb)
    # Redis first, MongoDB second. The worker deletes an order from the Redis queue once it is in
    # MongoDB, so the dump taken later holds every order the snapshot's stock counted (some may
    # also still sit in the snapshot's queue: the worker's insert is idempotent). The other order
    # would lose the orders persisted between the two steps. A purchase in between shows up as an
    # order without its stock decrement, which reconcile reports after a restore.
    t = time.monotonic()
    (staging / "redis").mkdir()
    redis_facts = redis_ops.snapshot(cfg.redis, staging / archive.REDIS)
    scratch = redis_ops.snapshot_facts(cfg.redis_server, staging / archive.REDIS, cfg.layout)
    redis_seconds = time.monotonic() - t
    t = time.monotonic()
    queue_before = redis_ops.queue_signature(cfg.redis, cfg.layout)
    mongo_ops.dump(cfg.mongodb, cfg.mongodump, staging / archive.MONGO)
    dump_seconds = time.monotonic() - t
    # One counting scan, after the dump (on FerretDB a scan costs about as much as the dump).
    orders = mongo_ops.orders(cfg.mongodb, cfg.layout)
    queue_after = redis_ops.queue_signature(cfg.redis, cfg.layout)
    collections = mongo_ops.collections(cfg.mongodb)
    index_specs = mongo_ops.indexes(cfg.mongodb)
    mongo_seconds = time.monotonic() - t
    blob, config_files = bundle.pack(cfg.config_paths, key, skip=[cfg.encryption_key_file])
    (staging / archive.CONFIG).write_bytes(blob)
    exact = queue_before == queue_after
    persisted_meanwhile = 0
    if not exact and queue_before and queue_after:
        # entries the worker deleted from the queue = added - growth
        persisted_meanwhile = max((queue_after[1] - queue_before[1]) - (queue_after[0] - queue_before[0]), 0)
        warn(
            f"warning: the shop took or persisted orders during the dump ({persisted_meanwhile} persisted); the "
            "manifest's order counts are an upper bound for this archive"
        )
    counts: dict[str, Any] = {
        "orders_per_product": {p: v["orders"] for p, v in sorted(orders.items())},
        "units_per_product": {p: v["units"] for p, v in sorted(orders.items())},
        "orders_total": sum(v["orders"] for v in orders.values()),
        "stock_per_product": scratch["stock_per_product"],
        "orders_exact": exact,
        "orders_persisted_during_dump": persisted_meanwhile,
    }
    return {
        "environment": cfg.environment,
        "created_at": started.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "mongodb": {
            "database": cfg.mongodb.database,
            "collections": collections,
            "indexes": index_specs,
            "seconds": round(mongo_seconds, 3),
            "dump_seconds": round(dump_seconds, 3),
            **mongo_server,
        },
        "redis": {**redis_facts, "keys_per_db": scratch["keys_per_db"], "seconds": round(redis_seconds, 3)},
        "config": {"files": config_files, "encryption": "fernet, key pbkdf2-hmac-sha256 + salt (backups/crypto.py)"},
        "counts": counts,
        "tools": {
            "backups": __version__,
            "python": platform.python_version(),
            "mongodump": mongo_ops.tool_version(cfg.mongodump),
            "mongorestore": mongo_ops.tool_version(cfg.mongorestore),
            "redis_server": redis_facts.get("redis_version", "?"),
            "pymongo": pymongo.version,
            "redis_py": redis.__version__,
            "cryptography": cryptography.__version__,
        },
        "layout": cfg.layout.model_dump(),
    }


def prune_old(cfg: Config, keep: Path, now: datetime) -> list[Path]:
    cutoff = now - timedelta(days=cfg.retention_days)
    removed = []
    for entry in archive.listing(cfg.backup_dir, cfg.environment):
        if entry.path == keep or entry.created >= cutoff:
            continue
        entry.path.unlink()
        entry.sidecar.unlink(missing_ok=True)
        removed.append(entry.path)
        say(
            f"retention: removed {entry.path.name} ({(now - entry.created).days} days old, "
            f"older than {cfg.retention_days:g} days)"
        )
    return removed


def prune(cfg: Config, now: datetime | None = None) -> int:
    """Retention on demand: only when the newest archive is recent and verifies, never otherwise."""
    now = now or datetime.now(UTC)
    with locked(cfg):
        entries = archive.listing(cfg.backup_dir, cfg.environment)
        if not entries:
            warn(f"prune: no archives of {cfg.environment} in {cfg.backup_dir}; nothing to do")
            return OK
        newest = entries[-1]
        if newest.created < now - timedelta(days=cfg.retention_days):
            warn(
                f"prune: refused: the newest archive {newest.path.name} is older than {cfg.retention_days:g} days; "
                "take a backup first (`python -m backups backup`)"
            )
            return FAILED
        with tempfile.TemporaryDirectory(dir=cfg.backup_dir, prefix=".verify-") as tmp:
            try:
                archive.extract(newest.path, Path(tmp))
            except archive.ArchiveError as err:
                warn(f"prune: refused: the newest archive does not verify: {err}")
                return CORRUPT
        state = metrics.load_state(cfg.backup_dir)
        metrics.bump(state, "backup_pruned_archives", len(prune_old(cfg, newest.path, now)))
        publish(cfg, state)
    return OK


def offsite(cfg: Config, path: Path) -> bool:
    subst = {"archive": str(path), "sidecar": str(archive.sidecar(path)), "name": path.name, "env": cfg.environment}
    argv = [arg.format(**subst) for arg in cfg.offsite_command]
    say(f"off-site: {shlex.join(argv)}")
    t = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=cfg.offsite_timeout_seconds)
    except (OSError, subprocess.TimeoutExpired) as err:
        warn(f"off-site copy FAILED: {err}; the local archive is kept; fix offsite_command")
        return False
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        warn(
            f"off-site copy FAILED (exit {proc.returncode}) after {time.monotonic() - t:.1f} s; the local archive "
            f"is kept:\n{tail}"
        )
        return False
    say(f"off-site: ok in {time.monotonic() - t:.1f} s")
    return True


# ---------------------------------------------------------------- verify / restore


def resolve(cfg: Config, name: str) -> Path:
    """An archive given as a path, or as a file name in the backup dir."""
    path = Path(name)
    if not path.exists() and not path.is_absolute() and (cfg.backup_dir / name).exists():
        path = cfg.backup_dir / name
    return path


def verify(cfg: Config, name: str, force: bool) -> int:
    path = resolve(cfg, name)
    with tempfile.TemporaryDirectory(dir=cfg.backup_dir if cfg.backup_dir.is_dir() else None, prefix=".verify-") as tmp:
        try:
            manifest = archive.extract(path, Path(tmp))
            archive.check_environment(manifest, cfg.environment, force, path.name)
        except archive.WrongEnvironment as err:
            warn(f"verify: {err}")
            return WRONG_ENV
        except archive.ArchiveError as err:
            warn(f"verify: {err}")
            return CORRUPT
    counts = manifest["counts"]
    say(
        f"verify OK: {path.name}: environment {manifest['environment']}, taken {manifest['created_at']} on "
        f"{manifest['host']}, {counts['orders_total']} orders, {len(counts['stock_per_product'])} products; "
        "all checksums match"
    )
    return OK


def _hook_env(cfg: Config) -> dict[str, str]:
    env = dict(os.environ)
    if cfg.hooks.env_file:
        for line in Path(cfg.hooks.env_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip().strip('"').strip("'")
    return env


def _run_hook(cfg: Config, what: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    say(f"==> {what}: {shlex.join(argv)}")
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=cfg.hooks.timeout_seconds)


@dataclass
class Comparison:
    rows: list[tuple[str, str, str, str, str, bool]]

    @property
    def ok(self) -> bool:
        return all(r[-1] for r in self.rows)


def compare(cfg: Config, manifest: dict[str, Any]) -> Comparison:
    counts = manifest["counts"]
    now_orders = {p: v["orders"] for p, v in mongo_ops.orders(cfg.mongodb, cfg.layout).items()}
    now_stock = redis_ops.stock(redis_ops.client(cfg.redis), cfg.layout)
    want_orders: dict[str, int] = counts["orders_per_product"]
    want_stock: dict[str, int] = counts["stock_per_product"]
    # A backup taken while orders were persisted holds an upper bound per product (README).
    exact = counts.get("orders_exact", True)
    rows = []
    for product in sorted(set(want_orders) | set(now_orders) | set(want_stock) | set(now_stock)):
        o_now, o_want = now_orders.get(product, 0), want_orders.get(product, 0)
        s_now, s_want = now_stock.get(product), want_stock.get(product)
        ok = (o_now == o_want if exact else o_now <= o_want) and s_now == s_want
        rows.append(
            (
                product,
                str(o_want) if exact else f"<={o_want}",
                str(o_now),
                "-" if s_want is None else str(s_want),
                "-" if s_now is None else str(s_now),
                ok,
            )
        )
    if not exact:
        low = counts["orders_total"] - counts.get("orders_persisted_during_dump", 0)
        total = sum(now_orders.values())
        rows.append(("(total)", f">={low}", str(total), "", "", total >= low))
    return Comparison(rows)


def print_table(comparison: Comparison) -> None:
    head = ("product", "orders (backup)", "orders (now)", "stock (backup)", "stock (now)", "")
    rows = [head] + [(*r[:5], "ok" if r[5] else "MISMATCH") for r in comparison.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        say("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def restore(cfg: Config, name: str, force: bool = False, run_hooks: bool = True) -> int:
    path = resolve(cfg, name)
    t0 = time.monotonic()
    with locked(cfg):
        state = metrics.load_state(cfg.backup_dir)
        work = Path(tempfile.mkdtemp(prefix=".restore-", dir=cfg.backup_dir))
        try:
            return _restore(cfg, path, work, force, run_hooks, state, t0)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _restore(
    cfg: Config, path: Path, work: Path, force: bool, run_hooks: bool, state: dict[str, Any], t0: float
) -> int:
    # 1. Everything that can refuse the archive happens before anything is stopped.
    say(f"==> verify {path}")
    try:
        manifest = archive.extract(path, work)
        archive.check_environment(manifest, cfg.environment, force, path.name)
    except archive.WrongEnvironment as err:
        warn(f"restore refused: {err}\nnothing was stopped or changed")
        return WRONG_ENV
    except archive.ArchiveError as err:
        warn(f"restore refused: {err}\nnothing was stopped or changed")
        return CORRUPT
    for tool in (cfg.mongorestore, cfg.redis_server):
        if not shutil.which(tool):
            warn(
                f"restore refused: {tool} not found on this host (see the config's mongorestore/redis_server)\n"
                "nothing was stopped or changed"
            )
            return USAGE
    try:
        mongo_ops.ping(cfg.mongodb)
        redis_ops.check(redis_ops.client(cfg.redis), cfg.redis)
        hook_env = _hook_env(cfg)
    except (*STEP_ERRORS,) as err:
        warn(f"restore refused: {err}\nnothing was stopped or changed")
        return FAILED
    counts = manifest["counts"]
    say(
        f"    archive OK: {manifest['environment']}, taken {manifest['created_at']}, {counts['orders_total']} orders, "
        f"{len(counts['stock_per_product'])} products"
    )
    metrics.bump(state, "restore_runs")

    def failed(msg: str) -> int:
        metrics.bump(state, "restore_failures")
        state["last_restore"] = {
            "finished": time.time(),
            "ok": False,
            "archive": path.name,
            "duration_seconds": time.monotonic() - t0,
        }
        publish(cfg, state)
        warn(msg)
        return FAILED

    # 2. Stop the writers.
    stopped: list[list[str]] = []
    if run_hooks:
        for argv in cfg.hooks.stop:
            proc = _run_hook(cfg, "stop", argv, hook_env)
            if proc.returncode != 0:
                for start in cfg.hooks.start:
                    _run_hook(cfg, "start (undo)", start, hook_env)
                return failed(
                    f"restore aborted: stop hook {shlex.join(argv)} exited {proc.returncode}:\n"
                    f"{proc.stderr.strip()}\nnothing was restored; the start hooks ran again"
                )
            stopped.append(argv)
    # 3. Replace the data.
    try:
        t = time.monotonic()
        say(f"==> restore MongoDB database {cfg.mongodb.database}")
        mongo_ops.restore(
            cfg.mongodb,
            cfg.mongorestore,
            work / archive.MONGO,
            manifest["mongodb"]["database"],
            manifest["mongodb"].get("indexes", {}),
        )
        say(f"    done in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        say("==> restore Redis")
        redis_keys = redis_ops.restore(cfg.redis, cfg.redis_server, work / archive.REDIS)
        say(f"    {redis_keys} keys (AOF rewritten) in {time.monotonic() - t:.1f} s")
        # Counted before the worker starts: afterwards it may persist orders still in the queue.
        comparison = compare(cfg, manifest)
    except STEP_ERRORS as err:
        return failed(
            f"restore FAILED: {err}\nthe app and worker are left stopped; fix the cause and run the "
            "restore again (it starts from scratch)"
        )
    # 4. Start the writers and let the app check itself.
    problems: list[str] = []
    if run_hooks:
        for argv in cfg.hooks.start:
            proc = _run_hook(cfg, "start", argv, hook_env)
            if proc.returncode != 0:
                problems.append(f"start hook {shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    reconcile = "not configured here (the restore playbook runs it on an app host)"
    if run_hooks and cfg.hooks.reconcile:
        proc = _run_hook(cfg, "reconcile", cfg.hooks.reconcile, hook_env)
        say("    " + "\n    ".join((proc.stdout.strip() or "(no output)").splitlines()))
        reconcile = "clean" if proc.returncode == 0 else f"NOT CLEAN (exit {proc.returncode})"
        if proc.returncode != 0:
            problems.append(f"reconcile exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    if not comparison.ok:
        problems.append("the restored counts differ from the manifest (table above)")
    duration = time.monotonic() - t0
    say("")
    say(f"restore summary: {path.name} -> {cfg.environment} in {duration:.1f} s")
    say(
        f"  taken {manifest['created_at']} on {manifest['host']}; mongodb {manifest['mongodb']['database']} -> "
        f"{cfg.mongodb.database}; redis keys {redis_keys}"
    )
    print_table(comparison)
    say(f"  counts vs manifest: {'identical' if comparison.ok else 'DIFFERENT'}; reconcile: {reconcile}")
    ok = not problems
    if not ok:
        metrics.bump(state, "restore_failures")
    state["last_restore"] = {"finished": time.time(), "ok": ok, "archive": path.name, "duration_seconds": duration}
    publish(cfg, state)
    if problems:
        warn("restore finished with problems:\n  " + "\n  ".join(problems))
        return MISMATCH
    say("restore OK")
    return OK


def list_archives(cfg: Config, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    entries = archive.listing(cfg.backup_dir)
    if not entries:
        say(f"no archives in {cfg.backup_dir}")
        return OK
    for e in entries:
        age = (now - e.created).total_seconds() / 86400
        mark = "" if e.env == cfg.environment else "  (other environment)"
        expiry = "  (expires at the next backup)" if e.env == cfg.environment and age > cfg.retention_days else ""
        say(f"{e.path.name}  {e.path.stat().st_size / 1e6:9.1f} MB  {age:6.1f} days{mark}{expiry}")
    return OK


def decrypt_config(cfg: Config, name: str, out: Path) -> int:
    path = resolve(cfg, name)
    with tempfile.TemporaryDirectory(dir=cfg.backup_dir if cfg.backup_dir.is_dir() else None, prefix=".config-") as tmp:
        try:
            archive.extract(path, Path(tmp))
        except archive.ArchiveError as err:
            warn(f"decrypt-config: {err}")
            return CORRUPT
        from backups import crypto

        try:
            written = bundle.unpack((Path(tmp) / archive.CONFIG).read_bytes(), cfg.encryption_key(), out)
        except crypto.DecryptionError as err:
            warn(f"decrypt-config: {err}")
            return CORRUPT
    say(f"wrote {len(written)} files under {out} (mode 0600; they hold secrets: delete them when done)")
    for p in written:
        say(f"  {p}")
    return OK
