"""`make bench-app`: purchases/s and latency of the buy endpoint vs a trivial endpoint of the same app.

Starts a throw-away redis-server and FerretDB on loopback ports, `scalemart serve` with N uvicorn
workers, then runs wrk against POST /api/buy (every request a new idempotency key from the next of
2,000 buyers, each with its own buyer token, so each one is a real sale) and GET /health/live at
several connection counts. The order worker is
not running while wrk measures (in an environment it has hosts of its own); it drains the queue
afterwards and `scalemart reconcile` must come out clean. Everything shares this machine's cores
with the load generator: the figures say so.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
APP_SRC = ROOT / "app"
PYTHON = ROOT / ".venv" / "bin" / "python"
FERRETDB = ROOT / ".tools" / "bin" / "ferretdb"
sys.path.insert(0, str(ROOT))
from loadtests import wrk  # noqa: E402  (the one home of the wrk scripts, shared with `make bench-env`)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {proc.args!r} exited early:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {url} did not answer within {timeout} s:\n{log.read_text()[-2000:]}")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"bench: nothing listens on 127.0.0.1:{port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2 = cores)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", default="50,200,1000")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args()
    try:
        wrk.require()
    except wrk.WrkError as exc:
        sys.exit(f"bench: {exc}")
    if shutil.which("redis-server") is None:
        sys.exit("bench: `redis-server` is missing: run `make bootstrap` (installs it from Debian)")
    if not FERRETDB.exists():
        sys.exit(f"bench: {FERRETDB} is missing: run `make bootstrap`")

    work = Path(tempfile.mkdtemp(prefix="scalemart-bench-"))
    procs: list[subprocess.Popen[Any]] = []

    def start(cmd: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
        log = (work / f"{name}.log").open("w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(p)
        return p

    try:
        redis_port, mongo_port, app_port = free_port(), free_port(), free_port()
        start(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(work),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "10000",
            ],
            "redis",
        )
        start(
            [
                str(FERRETDB),
                "--handler=sqlite",
                f"--sqlite-url=file:{work}/",
                f"--state-dir={work}",
                f"--listen-addr=127.0.0.1:{mongo_port}",
                f"--debug-addr=127.0.0.1:{free_port()}",
                "--telemetry=disable",
                "--log-level=WARN",
            ],
            "ferretdb",
        )
        wait_port(redis_port)
        wait_port(mongo_port)
        token, buyer_key = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALEMART_", "PROMETHEUS_MULTIPROC"))}
        env.update(
            {
                "PYTHONPATH": str(APP_SRC),
                "SCALEMART_ENVIRONMENT": "dev",
                "SCALEMART_ADMIN_TOKEN": token,
                "SCALEMART_BUYER_TOKEN_KEY": buyer_key,
                "SCALEMART_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "SCALEMART_MONGO_URL": f"mongodb://127.0.0.1:{mongo_port}/",
                "SCALEMART_MONGO_DB": "bench",
                # one client (wrk) sends everything: a limit it can never reach keeps the limiter's cost in
                "SCALEMART_RATE_LIMIT_REQUESTS": "1000000000",
                "SCALEMART_LOG_LEVEL": "warning",
                "SCALEMART_WORKER_NAME": "bench-worker",
            }
        )
        app = start(
            [
                str(PYTHON),
                "-m",
                "scalemart",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(app_port),
                "--workers",
                str(args.workers),
            ],
            "serve",
            env,
        )
        url = f"http://127.0.0.1:{app_port}"
        wait_http(url + "/health/live", app, work / "serve.log")
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r = admin.post(
            "/api/admin/products",
            json={
                "id": "bench",
                "name": "Bench TV",
                "price": 9.99,
                "stock": 1_000_000,
                "per_user_limit": 1000,
                "open": True,
            },
        )
        if r.status_code != 201:
            sys.exit(f"bench: could not create the product: {r.status_code} {r.text}")

        levels = [int(c) for c in args.connections.split(",")]
        rows = []
        for conns in levels:
            for label, path, post in (("POST /api/buy", "/api/buy", True), ("GET /health/live", "/health/live", False)):
                product = "bench" if post else None
                wrk.run(url, path, min(conns, 50), 2, args.threads, work, product, buyer_key)  # warm-up
                res = wrk.run(url, path, conns, args.seconds, args.threads, work, product, buyer_key)
                rows.append((label, conns, res))
                print(f"  measured {label} at {conns} connections: {res['rps']:.0f} req/s", file=sys.stderr)
        sold = 1_000_000 - admin.get("/api/products/bench").json()["stock_left"]

        worker = start([str(PYTHON), "-m", "scalemart", "worker", "--metrics-port", "0", "--drain"], "worker", env)
        t0 = time.monotonic()
        worker.wait(timeout=1800)
        drain_s = time.monotonic() - t0
        rec = subprocess.run(
            [str(PYTHON), "-m", "scalemart", "reconcile", "--require-drained"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

        cpu = os.cpu_count()
        print(
            f"\nScaleMart API benchmark - load generator: wrk 4.1.0 ({args.threads} threads, keep-alive), "
            f"{args.seconds} s per run."
        )
        print(
            f"Server: `scalemart serve --workers {args.workers}` (uvicorn+uvloop+httptools), redis-server, FerretDB; "
            f"wrk and all of them share this machine's {cpu} cores (load average before: "
            f"{os.getloadavg()[0]:.1f})."
        )
        print(
            "POST /api/buy: each request is a new idempotency key from the next of 2,000 buyers (each its own buyer "
            "token, verified), i.e. a real sale via the Lua script.\n"
        )
        print(
            f"| {'endpoint':<17} | {'conns':>5} | {'req/s':>7} | {'p50 ms':>6} | {'p95 ms':>6} | {'p99 ms':>7} "
            f"| {'errors':>6} |"
        )
        print(f"|{'-' * 19}|{'-' * 7}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 8}|")
        for label, conns, res in rows:
            print(
                f"| {label:<17} | {conns:>5} | {res['rps']:>7.0f} | {res['p50'] / 1000:>6.1f} | "
                f"{res['p95'] / 1000:>6.1f} | {res['p99'] / 1000:>7.1f} | {res['errors']:>6} |"
            )
        print()
        for conns in levels:
            buy = next(r for lbl, c, r in rows if c == conns and lbl.startswith("POST"))
            live = next(r for lbl, c, r in rows if c == conns and lbl.startswith("GET"))
            print(f"buy/trivial throughput ratio at {conns:>4} connections: {buy['rps'] / live['rps']:.2f}")
        print(
            f"\nunits sold during the runs: {sold}; worker drained them into FerretDB in {drain_s:.1f} s "
            f"({sold / max(drain_s, 0.001):.0f} orders/s)"
        )
        print(f"reconcile after drain: {'clean' if rec.returncode == 0 else 'NOT CLEAN'}")
        if rec.returncode != 0:
            print(rec.stdout, rec.stderr)
            return 1
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
