"""`make bench-env ENV=…`: wrk through an environment's load balancer, and where the cores went.

    python -m loadtests.bench_env --env dev [--seconds 10] [--connections 50,200,1000] [--threads 2]

Drives three targets at each connection count: POST /api/buy (every request a new idempotency key from
the next of 2,000 buyers, each with its own buyer token, so each one is a real sale through balancer, app
(the token verified), Redis and the worker), a product
read, and GET /health/live (the trivial baseline). For each run it prints req/s, p50/p95/p99,
non-2xx answers and socket errors, and the CPU of every host container (its cgroup's cumulative
counter, the one the Docker engine's stats API reports, read before and after the run), of wrk
itself and of the engine's processes on this machine (docker-proxy, dockerd, containerd), as % of
one core: the load generator shares the cores with the shop. Afterwards it waits for the worker to
drain the queue and runs the app's reconcile on an app host (every product: stock taken = units in
MongoDB), which must be clean. The report lands in build/<env>/load/bench-env.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import psutil

from loadtests import buyers, wrk
from loadtests.run import Shop, check_answers, target, wait_drained
from toolchain.common import BUILD

ENGINE_PROCESSES = ("docker-proxy", "dockerd", "containerd")
# The app's own reconcile on an app host through the release role's `scalemart` command, as
# playbooks/restore.yml runs it: no balancer timeout in the way (FerretDB reads every order for it,
# which takes minutes once an environment holds a few hundred thousand).
RECONCILE = ["scalemart", "reconcile", "--require-drained"]


@dataclass(frozen=True)
class Target:
    label: str
    path: str
    buy: bool


def targets(product: str) -> list[Target]:
    return [
        Target("POST /api/buy", "/api/buy", True),
        Target("GET /api/products/{id}", f"/api/products/{product}", False),
        Target("GET /health/live", "/health/live", False),
    ]


CGROUP_USAGE = (
    "/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage",  # cgroup v1, cgroupfs driver
    "/sys/fs/cgroup/docker/{id}/cpu.stat",  # cgroup v2, cgroupfs driver
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat",
)  # cgroup v2, systemd driver


def _cgroup_seconds(path: Path) -> float:
    text = path.read_text()
    if path.name == "cpuacct.usage":
        return int(text) / 1e9
    usage = next(line for line in text.splitlines() if line.startswith("usage_usec "))
    return int(usage.split()[1]) / 1e6


class CpuMeter:
    """CPU seconds used by each host container and by the engine's processes on this machine, between two reads.

    A container's counter is its cgroup's CPU usage, the counter the Docker engine's stats API
    reports; read from the cgroup file where the engine is local (microseconds), else from the API
    (about a second per container, so the figures then cover a little of the idle time around a run).
    """

    def __init__(self, containers: dict[str, str]) -> None:
        self.client = docker.from_env()
        self.containers = containers  # host name → container name
        self.files: dict[str, Path] = {}
        for host, name in containers.items():
            cid = self.client.api.inspect_container(name)["Id"]
            found = next((path for p in CGROUP_USAGE if (path := Path(p.format(id=cid))).exists()), None)
            if found:
                self.files[host] = found

    def read(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        for host, name in self.containers.items():
            if host in self.files:
                seconds[host] = _cgroup_seconds(self.files[host])
            else:
                stats = self.client.api.stats(name, stream=False, one_shot=True)
                seconds[host] = stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
        for proc in psutil.process_iter(["name", "cpu_times"]):
            name = proc.info["name"] or ""
            if name.startswith(ENGINE_PROCESSES):
                key = next(p for p in ENGINE_PROCESSES if name.startswith(p))
                times = proc.info["cpu_times"]
                if times is not None:
                    seconds[key] = seconds.get(key, 0.0) + times.user + times.system
        times = psutil.cpu_times()
        seconds["machine"] = times.user + times.nice + times.system + times.irq + times.softirq  # guest is in user
        return seconds


def run_one(
    url: str,
    tgt: Target,
    conns: int,
    seconds: int,
    threads: int,
    work: Path,
    product: str,
    meter: CpuMeter,
    buyer_key: str,
) -> dict[str, Any]:
    buy = product if tgt.buy else None
    # warm-up: connections, caches, JIT-free paths
    wrk.run(url, tgt.path, min(conns, 50), 2, threads, work, buy, buyer_key)
    t0 = time.monotonic()
    before = meter.read()
    res = wrk.run(url, tgt.path, conns, seconds, threads, work, buy, buyer_key)
    after = meter.read()
    wall = time.monotonic() - t0
    cpu = {k: 100 * max(after.get(k, 0.0) - v, 0.0) / wall for k, v in before.items()}
    cpu["wrk"] = 100 * res["cpu_s"] / wall
    accounted = sum(v for k, v in cpu.items() if k != "machine")
    cpu["other"] = max(cpu["machine"] - accounted, 0.0)
    return {"target": tgt.label, "connections": conns, **res, "cpu_percent": {k: round(v, 1) for k, v in cpu.items()}}


def print_tables(rows: list[dict[str, Any]], hosts: list[str], seconds: int, threads: int) -> None:
    print(
        f"\nwrk through the balancer ({threads} threads, keep-alive, {seconds} s per run; "
        f"load average before: {os.getloadavg()[0]:.1f})"
    )
    print("| target | conns | req/s | p50 ms | p95 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['target']} | {r['connections']} | {r['rps']:.0f} | {r['p50'] / 1000:.1f} | {r['p95'] / 1000:.1f} "
            f"| {r['p99'] / 1000:.1f} | {r['status']} | {r['socket_errors']} |"
        )
    cols = [*hosts, "wrk", *ENGINE_PROCESSES, "other"]
    print(f"\nwhere the cores went (% of one core; {os.cpu_count()} cores = {100 * (os.cpu_count() or 1)} %)")
    print("| target | conns | " + " | ".join(cols) + " | machine |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    for r in rows:
        cpu = r["cpu_percent"]
        print(
            f"| {r['target']} | {r['connections']} | "
            + " | ".join(f"{cpu.get(c, 0.0):.0f}" for c in cols)
            + f" | {cpu['machine']:.0f} |"
        )
    print()
    for conns in sorted({r["connections"] for r in rows}):
        buy = next(r for r in rows if r["connections"] == conns and r["target"] == "POST /api/buy")
        live = next(r for r in rows if r["connections"] == conns and r["target"] == "GET /health/live")
        print(f"buy/trivial throughput ratio at {conns:>4} connections: {buy['rps'] / live['rps']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_env", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="dev")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", default="50,200,1000", help="comma-separated connection counts")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args(argv)
    try:
        levels = [int(c) for c in args.connections.split(",")]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        print(
            f"bench-env: --connections={args.connections} must be positive numbers, e.g. 50,200,1000", file=sys.stderr
        )
        return 2
    if args.seconds < 1:
        print(f"bench-env: --seconds={args.seconds} must be at least 1", file=sys.stderr)
        return 2
    try:
        wrk.require()
    except wrk.WrkError as exc:
        print(f"bench-env: {exc}", file=sys.stderr)
        return 2
    base, token = target(args.env, None)
    buyer_key = buyers.key_for(args.env)
    check_answers(args.env, base, None)
    outputs = json.loads((BUILD / args.env / "outputs.json").read_text())
    hosts = {name: h["container"] for name, h in sorted(outputs["hosts"].items())}
    meter = CpuMeter(hosts)
    shop = Shop(base, token)
    product = shop.create_product(f"bench-{uuid.uuid4().hex[:6]}", 9.99, 1_000_000, per_user_limit=1000)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scalemart-bench-env-") as tmp:
        for conns in levels:
            for tgt in targets(product):
                row = run_one(base, tgt, conns, args.seconds, args.threads, Path(tmp), product, meter, buyer_key)
                rows.append(row)
                print(
                    f"  measured {tgt.label} at {conns} connections: {row['rps']:.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
    drain_s = wait_drained(shop, timeout=600)
    bench_product = shop.product(product)
    sold = int(bench_product["stocked"]) - int(bench_product["stock_left"])
    app_host = next(h for h in outputs["hosts"].values() if "app" in h["groups"])
    print(f"  reconcile on {app_host['name']} (reads every order in MongoDB) ...", file=sys.stderr, flush=True)
    rec = meter.client.containers.get(app_host["container"]).exec_run(RECONCILE)
    problems = [] if rec.exit_code == 0 else [rec.output.decode(errors="replace")[-2000:]]
    print_tables(rows, list(hosts), args.seconds, args.threads)
    print(f"\nunits sold during the runs: {sold}; the queue drained {drain_s:.1f} s after the last run")
    print(f"reconcile after drain: {'clean' if not problems else 'NOT CLEAN: ' + '; '.join(problems)}")
    report = BUILD / args.env / "load" / "bench-env.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps(
            {
                "env": args.env,
                "seconds": args.seconds,
                "threads": args.threads,
                "rows": rows,
                "sold": sold,
                "queue_drained_s": round(drain_s, 1),
                "reconcile": problems,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"report: {report}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
