"""Fixtures for the app tests: real redis-server, real FerretDB, the real `scalemart` CLI in subprocesses.

The app is imported from source: `app/` goes on sys.path here and on PYTHONPATH of every
subprocess, so a fresh clone needs no install step.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.monitoring import monitoring  # noqa: F401 - the analytics tests' Prometheus + Alertmanager
from tests.net import free_port, wait_port  # noqa: F401 - re-exported to this area
from toolchain.common import TOOLS_BIN

ROOT = Path(__file__).resolve().parents[2]
APP_SRC = ROOT / "app"
TOOLS = TOOLS_BIN
PYTHON = ROOT / ".venv" / "bin" / "python"
if str(APP_SRC) not in sys.path:
    sys.path.insert(0, str(APP_SRC))

ADMIN_TOKEN = "tests-" + secrets.token_hex(16)
BUYER_KEY = "tests-buyer-" + secrets.token_hex(24)


def as_buyer(user: str, ttl: int = 3600) -> dict[str, str]:
    """The header a buyer sends: a token for `user` signed with the tests' key, as the shop's login mints it."""
    from scalemart import tokens

    return {"Authorization": f"Bearer {tokens.issue(BUYER_KEY, user, ttl).token}"}


def stop(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class RedisServer:
    """A redis-server on a free loopback port, with AOF so a stop/start keeps the stock."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            pytest.fail("redis-server is missing: run `make bootstrap` (installs redis-server)")
        self.binary = binary
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "no",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(log),
                "--databases",
                "64",
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self.proc, log=log)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
            self.proc = None


class FerretDB:
    def __init__(self, workdir: Path) -> None:
        binary = TOOLS / "ferretdb"
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `make bootstrap`")
        self.port = free_port()
        self.log = workdir / "ferretdb.log"
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--handler=sqlite",
                f"--sqlite-url=file:{workdir}/",
                f"--state-dir={workdir}",
                f"--listen-addr=127.0.0.1:{self.port}",
                f"--debug-addr=127.0.0.1:{free_port()}",
                "--telemetry=disable",
                "--log-level=WARN",
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self.proc, log=self.log)

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDB]:
    server = FerretDB(tmp_path_factory.mktemp("ferretdb"))
    yield server
    server.stop()


_db_counter = iter(range(1, 64))


class Env:
    """One isolated app environment: its own Redis database number and MongoDB database."""

    def __init__(self, redis_base: str, mongo_base: str, tmp: Path, /, **overrides: Any) -> None:
        n = next(_db_counter)
        self.tmp = tmp
        self.vars = {
            "SCALEMART_ENVIRONMENT": "test",
            "SCALEMART_REDIS_URL": f"{redis_base}/{n}",
            "SCALEMART_MONGO_URL": mongo_base,
            "SCALEMART_MONGO_DB": f"scalemart_test_{n}_{secrets.token_hex(3)}",
            "SCALEMART_ADMIN_TOKEN": ADMIN_TOKEN,
            "SCALEMART_BUYER_TOKEN_KEY": BUYER_KEY,
            "SCALEMART_RATE_LIMIT_REQUESTS": "0",
            "SCALEMART_LOG_LEVEL": "warning",
            "SCALEMART_WORKER_NAME": f"worker-{n}",
        }
        self.vars.update({f"SCALEMART_{k.upper()}": str(v) for k, v in overrides.items()})

    def mongo(self) -> Any:
        """This environment's MongoDB database (a synchronous client)."""
        import pymongo

        return pymongo.MongoClient(self.vars["SCALEMART_MONGO_URL"])[self.vars["SCALEMART_MONGO_DB"]]

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALEMART_", "PROMETHEUS_MULTIPROC"))}
        return {**env, **self.vars, "PYTHONPATH": str(APP_SRC)}

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PYTHON), "-m", "scalemart", *args], env=self.environ(), capture_output=True, text=True, timeout=timeout
        )

    def settings(self) -> Any:
        from scalemart.settings import Settings

        given: dict[str, Any] = {k.removeprefix("SCALEMART_").lower(): v for k, v in self.vars.items()}
        return Settings(**given)


class AppServer:
    def __init__(self, env: Env, workers: int = 2) -> None:
        self.env = env
        self.port = free_port()
        self.workers = workers
        self.log = env.tmp / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppServer:
        self.proc = subprocess.Popen(
            [
                str(PYTHON),
                "-m",
                "scalemart",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env.environ(),
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.port, self.proc, log=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every worker process up: /health/live answers
            try:
                if httpx.get(self.url + "/health/live", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"app on {self.url} not live:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc:
            stop(self.proc, timeout=20)
            self.proc = None

    def client(self, admin: bool = False, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if admin else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)


class WorkerProc:
    def __init__(self, env: Env, metrics_port: int = 0) -> None:
        self.env = env
        self.metrics_port = metrics_port
        self.log = env.tmp / "worker.log"
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> WorkerProc:
        self.proc = subprocess.Popen(
            [str(PYTHON), "-m", "scalemart", "worker", "--metrics-port", str(self.metrics_port)],
            env=self.env.environ(),
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        if self.metrics_port:
            wait_port(self.metrics_port, self.proc, log=self.log)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def make_env(redis_server: RedisServer, ferretdb: FerretDB, tmp_path: Path) -> Any:
    def factory(**overrides: Any) -> Env:
        return Env(redis_server.url, ferretdb.url, tmp_path, **overrides)

    return factory


@pytest.fixture
def running() -> Iterator[list[Any]]:
    """Processes started by a test; stopped at its end even when it fails."""
    procs: list[Any] = []
    yield procs
    for p in reversed(procs):
        p.stop()


@pytest.fixture(scope="module")
def shared_app(
    redis_server: RedisServer, ferretdb: FerretDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """One API (2 uvicorn workers) plus a worker per test module, for tests that do not restart anything."""
    env = Env(redis_server.url, ferretdb.url, tmp_path_factory.mktemp("app"))
    server = AppServer(env).start()
    worker = WorkerProc(env).start()
    yield server
    worker.stop()
    server.stop()


def buy(
    client: httpx.Client, product: str, user: str = "alice", qty: int = 1, key: str | None = None
) -> httpx.Response:
    return client.post(
        "/api/buy",
        json={"user_id": user, "product_id": product, "quantity": qty, "idempotency_key": key or uuid.uuid4().hex},
        headers=as_buyer(user),
    )


def assert_error(r: httpx.Response, status: int, error: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == error, body
    assert body["message"]
    if field is not None:
        assert body["field"] == field, body
        assert re.search(rf"\b{re.escape(field)}\b", body["message"]), f"the message does not name {field}: {body}"
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def admin(shared_app: AppServer) -> httpx.Client:
    return shared_app.client(admin=True)


@pytest.fixture(scope="module")
def anon(shared_app: AppServer) -> httpx.Client:
    return shared_app.client()


def create_product(
    client: httpx.Client, product_id: str, stock: int = 10, price: float = 9.99, open_sale: bool = True, **extra: Any
) -> dict[str, Any]:
    r = client.post(
        "/api/admin/products",
        json={
            "id": product_id,
            "name": f"Product {product_id}",
            "price": price,
            "stock": stock,
            "open": open_sale,
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_drained(env: Env, expected_orders: int | None = None, timeout: float = 120) -> None:
    import redis

    r = redis.Redis.from_url(env.vars["SCALEMART_REDIS_URL"])
    db = env.mongo()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.xlen("sm:orders") == 0 and (expected_orders is None or db.orders.count_documents({}) >= expected_orders):
            return
        time.sleep(0.1)
    raise TimeoutError(
        f"queue not drained after {timeout} s: {r.xlen('sm:orders')} left, "
        f"{db.orders.count_documents({})} orders in MongoDB"
    )
