"""Real servers on loopback for the backup tests and backups/bench.py: redis-server configured
like the redis role (AOF on, fsync always, password) and FerretDB with SCRAM auth like the
mongodb role. Each lives in its own temp dir."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymongo
import redis

from tests.net import free_port, wait_port  # noqa: F401 - re-exported to this area
from toolchain.common import TOOLS_BIN

ROOT = Path(__file__).resolve().parents[2]
TOOLS = TOOLS_BIN
REDIS_SERVER = "/usr/bin/redis-server"


class Missing(RuntimeError):
    """A prerequisite is missing; the message names the fix."""


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        raise Missing(f"{path} is missing: run `make bootstrap`")
    return str(path)


def redis_binary() -> str:
    if not Path(REDIS_SERVER).exists():
        raise Missing(f"{REDIS_SERVER} is missing: run `make bootstrap` (installs redis-server)")
    return REDIS_SERVER


@dataclass
class RedisServer:
    port: int
    password: str
    dir: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    def client(self, db: int = 0, decode: bool = True) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, db=db, decode_responses=decode)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.dir / "redis.log"
        self.proc = subprocess.Popen([redis_binary(), str(self.conf)], stdout=log.open("a"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, log)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().ping()
                return
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Like `systemctl stop redis-server`: SIGTERM, which with AOF on keeps the AOF as is."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


@contextlib.contextmanager
def redis_server(work: Path, password: str) -> Iterator[RedisServer]:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "redis.conf"
    # The redis role's persistence settings (roles/redis/templates/redis.conf.j2).
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                "daemonize no",
                f"dir {work}",
                "dbfilename dump.rdb",
                f"requirepass {password}",
                "appendonly yes",
                'appendfilename "appendonly.aof"',
                "appendfsync always",
                "aof-use-rdb-preamble yes",
                "save 900 1",
                "save 300 10",
                "save 60 10000",
                "maxmemory-policy noeviction",
                f"logfile {work / 'redis.log'}",
                "",
            ]
        )
    )
    server = RedisServer(port, password, work, conf)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Ferret:
    host_port: str
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"mongodb://{self.username}:{self.password}@{self.host_port}/?authSource=admin"

    @property
    def bare_url(self) -> str:
        return f"mongodb://{self.host_port}/"

    def client(self) -> pymongo.MongoClient:
        return pymongo.MongoClient(self.url, serverSelectionTimeoutMS=10000, tz_aware=True)


@contextlib.contextmanager
def ferretdb(work: Path, username: str, password: str) -> Iterator[Ferret]:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "ferretdb.log"
    # The mongodb role's settings (roles/mongodb/templates/ferretdb.env.j2): SQLite, SCRAM, setup user.
    proc = subprocess.Popen(
        [
            tool("ferretdb"),
            "--handler=sqlite",
            f"--sqlite-url=file:{work}/",
            f"--state-dir={work}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--debug-addr=127.0.0.1:{free_port()}",
            "--telemetry=disable",
            "--log-level=warn",
            "--test-enable-new-auth",
            "--setup-database=admin",
            f"--setup-username={username}",
            f"--setup-password={password}",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, log)
        server = Ferret(f"127.0.0.1:{port}", username, password)
        deadline = time.monotonic() + 30
        while True:  # the setup user appears once the backend is initialised
            try:
                server.client().admin.command("ping")
                server.client()["scalemart_probe"].list_collection_names()
                break
            except pymongo.errors.OperationFailure:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def have_tools() -> None:
    for name in ("ferretdb", "mongodump", "mongorestore"):
        tool(name)
    redis_binary()
    if shutil.which("promtool") is None:
        raise Missing("promtool is missing: run `make bootstrap` (installs prometheus)")
