"""`make load`: run a Locust scenario headless against an environment and apply the gates.

    python -m loadtests.run --env dev --scenario normal|flash|stampede|step [--users N] [--duration 20s]
                            [--think 0.5-2] [--processes N] [--workers N] [--host URL]

Checks every option and that the shop answers before any traffic is sent, prepares the products
through the admin API, runs Locust with one worker process per core (Locust's --processes; or a
master and N local workers with --workers), samples every Locust process's CPU during the run,
writes CSV stats, full history, the HTML report and a JSON summary to build/<env>/load/, prints a
summary table, and exits non-zero when a gate fails or a sale oversold. A run whose generator was
saturated says so: its figures are a floor, not the shop's capacity.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtests import buyers
from loadtests.gates import Gates, LoadOptionError, generator_saturation, parse_think
from toolchain.common import BUILD, VENV_BIN

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
SATURATED = "load generator saturated: the figures are a floor"
PERCENTILE_WINDOW_S = 10  # Locust's CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW
_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+s)?$")


@dataclass(frozen=True)
class Scenario:
    """A scenario's defaults: what `make load SCENARIO=…` does when USERS, THINK or the spawn rate are not given."""

    users: int
    think: str
    spawn_rate: int | None  # users started per second; None = a fifth of the users per second
    duration: str


SCENARIOS = {
    "normal": Scenario(users=100, think="0.5-2", spawn_rate=None, duration="30s"),
    # The seed guide's flash sale: 10,000 concurrent users, 5-15 s between clicks, arriving at 100/s.
    "flash": Scenario(users=10_000, think="5-15", spawn_rate=100, duration="160s"),
    "stampede": Scenario(users=500, think="0-0.05", spawn_rate=0, duration="20s"),  # 0 = everyone at once
    "step": Scenario(users=0, think="0.5-2", spawn_rate=None, duration="150s"),  # the shape sets users
}


@dataclass
class Options:
    scenario: str
    users: int
    think: tuple[float, float]
    duration: str
    spawn_rate: int
    processes: int
    workers: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """Every option checked before any traffic; a bad one is a LoadOptionError naming it and the fix."""
        if args.scenario not in SCENARIOS:
            raise LoadOptionError(f"SCENARIO={args.scenario} is not a scenario: pick one of {', '.join(SCENARIOS)}")
        base = SCENARIOS[args.scenario]
        users = base.users if args.users is None else args.users
        if args.scenario != "step" and users < 1:
            raise LoadOptionError(f"USERS={users} sends no traffic: give at least 1 user, e.g. USERS={base.users}")
        think = parse_think(args.think or base.think)
        duration = args.duration or base.duration
        if not duration or not _DURATION.match(duration):
            raise LoadOptionError(f"DURATION={duration} is not a Locust run time: write e.g. 30s, 3m or 1h30m")
        if base.spawn_rate is None:
            spawn = max(users // 5, 1)
        else:
            spawn = base.spawn_rate or users
        processes = args.processes if args.processes is not None else (os.cpu_count() or 1)
        if processes < 1:
            raise LoadOptionError(f"PROCESSES={processes}: give at least 1 Locust process (default: one per core)")
        if args.workers < 0:
            raise LoadOptionError(f"WORKERS={args.workers}: give 0 (one process per core) or a number of workers")
        return cls(args.scenario, users, think, duration, spawn, processes, args.workers)


@dataclass
class GeneratorCpu:
    """Every Locust process's CPU over the run, sampled once a second, and the machine's."""

    limit_percent: float
    samples: list[dict[str, float]] = field(default_factory=list)
    machine: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        per_proc: dict[str, list[float]] = {}
        for sample in self.samples:
            for proc, cpu in sample.items():
                per_proc.setdefault(proc, []).append(cpu)
        held = generator_saturation(self.samples, self.limit_percent)
        return {
            "processes": len(per_proc),
            "mean_percent": {p: round(sum(v) / len(v), 1) for p, v in per_proc.items()},
            "peak_percent": round(max((max(v) for v in per_proc.values()), default=0.0), 1),
            "machine_busy_percent": round(sum(self.machine) / len(self.machine), 1) if self.machine else 0.0,
            "limit_percent": self.limit_percent,
            "saturated": held is not None,
            "saturated_at_percent": held,
        }


def sample_generator(roots: list[psutil.Process], cpu: GeneratorCpu, stop: threading.Event) -> None:
    """Sample the CPU of `roots` and their children (the Locust processes) once a second until `stop` is set."""
    procs: dict[int, psutil.Process] = {}
    psutil.cpu_percent(None)
    while not stop.wait(1.0):
        family: list[psutil.Process] = []
        for root in roots:
            try:
                family += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        sample: dict[str, float] = {}
        for proc in family:
            known = procs.setdefault(proc.pid, proc)
            try:
                sample[str(proc.pid)] = known.cpu_percent(None)
            except psutil.Error:
                continue
        cpu.samples.append(sample)
        cpu.machine.append(psutil.cpu_percent(None))


def target(env: str, host: str | None) -> tuple[str, str]:
    """The shop URL and the admin token for `env` (or the given host, with the token from the environment)."""
    token = os.environ.get("SCALEMART_ADMIN_TOKEN", "")
    if host:
        if not token:
            raise SystemExit("--host needs SCALEMART_ADMIN_TOKEN in the environment")
        return host.rstrip("/"), token
    outputs = BUILD / env / "outputs.json"
    if not outputs.exists():
        raise SystemExit(f"{outputs} is missing: bring the environment up first with `make up ENV={env}`")
    shop = json.loads(outputs.read_text())["urls"]["shop"]
    if not token:
        from ops import secrets

        token = secrets.load(env)["scalemart_admin_token"]
    return shop.rstrip("/"), token


def check_answers(env: str, base: str, host: str | None) -> None:
    """The shop must answer before any traffic is sent."""
    try:
        resp = httpx.get(f"{base}/health/live", timeout=5)
    except httpx.HTTPError as exc:
        fix = "check --host" if host else f"bring it up with `make up ENV={env}`"
        raise SystemExit(f"ENV={env}: the shop at {base} does not answer ({type(exc).__name__}): {fix}") from None
    if resp.status_code != 200:
        raise SystemExit(
            f"ENV={env}: {base}/health/live answered {resp.status_code}: "
            f"check the environment with `make verify ENV={env}`"
        )


class Shop:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})

    def _ok(self, resp: httpx.Response) -> dict:
        if resp.status_code >= 300:
            raise SystemExit(f"{resp.request.method} {resp.request.url} answered {resp.status_code}: {resp.text[:300]}")
        return dict(resp.json())

    def create_product(self, pid: str, price: float, stock: int, per_user_limit: int = 5) -> str:
        body = {"id": pid, "name": pid, "price": price, "stock": stock, "per_user_limit": per_user_limit, "open": True}
        return str(self._ok(self.http.post("/api/admin/products", json=body))["id"])

    def product(self, pid: str) -> dict:
        return self._ok(self.http.get(f"/api/products/{pid}"))

    def stats(self) -> dict:
        return self._ok(self.http.get("/api/admin/stats"))

    def reconcile(self, pid: str) -> dict:
        """The app's reconcile over HTTP: Redis stock and counters against the orders in MongoDB."""
        resp = self.http.get("/api/admin/reconcile", params={"product_id": pid, "require_drained": "true"}, timeout=300)
        return self._ok(resp)


def run_locust(
    env: str, opts: Options, base: str, token: str, gates: Gates, extra_env: dict[str, str]
) -> tuple[Path, int, GeneratorCpu]:
    out = BUILD / env / "load"
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / opts.scenario
    for stale in out.glob(f"{opts.scenario}[-_.]*"):
        stale.unlink()
    locust = VENV_BIN / "locust"
    common = ["-f", str(LOCUSTFILE)]
    cmd = [
        str(locust),
        *common,
        "--headless",
        "--host",
        base,
        "-t",
        opts.duration,
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--html",
        str(prefix) + ".html",
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    if opts.scenario != "step":
        cmd += ["-u", str(opts.users), "-r", str(opts.spawn_rate)]
    run_env = {
        **os.environ,
        **extra_env,
        "PYTHONPATH": str(ROOT),
        "SCALEMART_SCENARIO": opts.scenario,
        "SCALEMART_ADMIN_TOKEN": token,
        "SCALEMART_GATES_REPORT": str(prefix) + "-gates.json",
        "SCALEMART_SATURATION_REPORT": str(prefix) + "-saturation.json",
        "SCALEMART_THINK": f"{opts.think[0]:g}-{opts.think[1]:g}",
    }
    worker_procs: list[subprocess.Popen[bytes]] = []
    if opts.workers > 0:
        cmd += ["--master", "--expect-workers", str(opts.workers), "--master-bind-host", "127.0.0.1"]
        for _ in range(opts.workers):
            worker_procs.append(
                subprocess.Popen(
                    [str(locust), *common, "--worker", "--master-host", "127.0.0.1", "--loglevel", "WARNING"],
                    env=run_env,
                )
            )
        how = f"a master and {opts.workers} workers"
    else:
        cmd += ["--processes", str(opts.processes)]
        how = f"{opts.processes} processes"
    users = "rising users" if opts.scenario == "step" else f"{opts.users} users"
    print(
        f"locust: {opts.scenario}, {users} (spawn {opts.spawn_rate}/s), think {opts.think[0]:g}-{opts.think[1]:g} s, "
        f"{opts.duration}, {how} → {base}",
        flush=True,
    )
    cpu = GeneratorCpu(limit_percent=100 * gates.generator_cpu_ratio)
    stop = threading.Event()
    master = subprocess.Popen(cmd, env=run_env)
    roots = [psutil.Process(proc.pid) for proc in [master, *worker_procs]]
    sampler = threading.Thread(target=sample_generator, args=(roots, cpu, stop), daemon=True)
    sampler.start()
    code = master.wait()
    stop.set()
    for proc in worker_procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    sampler.join(timeout=5)
    return prefix, code, cpu


def aggregated(prefix: Path) -> dict[str, float]:
    with open(f"{prefix}_stats.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                return {
                    "requests": float(row["Request Count"]),
                    "failures": float(row["Failure Count"]),
                    "rps": float(row["Requests/s"]),
                    "p50": float(row["50%"]),
                    "p95": float(row["95%"]),
                    "p99": float(row["99%"]),
                }
    raise SystemExit(f"{prefix}_stats.csv has no Aggregated row")


def best_step(prefix: Path, gates: Gates, saturated_users: int | None = None) -> dict[str, float]:
    """The highest user count whose samples all met the gates, from the full history.

    With `saturated_users`, the steps from the one where the load generator saturated on are not
    counted: what they measure is Locust, not the shop.
    """
    per_users: dict[int, list[dict[str, str]]] = {}
    with open(f"{prefix}_stats_history.csv") as fh:
        for row in csv.DictReader(fh):
            # (samples before the first user started say nothing about a step)
            if row["Name"] == "Aggregated" and row["95%"] not in ("N/A", "") and int(row["User Count"]) > 0:
                per_users.setdefault(int(row["User Count"]), []).append(row)
    best = {"users": 0.0, "rps": 0.0, "p95": 0.0}
    for users in sorted(per_users):
        if saturated_users is not None and users >= saturated_users:
            break
        # Locust's current percentiles cover the last PERCENTILE_WINDOW_S: a step's first samples mix in the
        # step before (and the first step's connection set-up), so only the later ones judge a step.
        start = float(per_users[users][0]["Timestamp"])
        rows = [r for r in per_users[users] if float(r["Timestamp"]) - start >= PERCENTILE_WINDOW_S]
        rows = rows or per_users[users][-1:]
        p95 = max(float(r["95%"]) for r in rows)
        reqs = float(rows[-1]["Total Request Count"])
        fails = float(rows[-1]["Total Failure Count"])
        if p95 >= gates.p95_ms or (reqs and fails / reqs >= gates.error_ratio):
            break
        best = {"users": float(users), "rps": max(float(r["Requests/s"]) for r in rows), "p95": p95}
    return best


def wait_drained(shop: Shop, timeout: float = 120) -> float:
    """Seconds until the order queue is empty (the worker has persisted every accepted order)."""
    start = time.monotonic()
    deadline = start + timeout
    stats = shop.stats()
    while time.monotonic() < deadline:
        stats = shop.stats()
        if int(stats["totals"]["queued_orders"]) == 0:
            return time.monotonic() - start
        time.sleep(0.5)
    raise SystemExit(
        f"the order queue did not drain within {timeout:.0f} s: {stats['totals']['queued_orders']} orders left"
    )


def check_stampede(shop: Shop, pid: str, initial: int, oversell_limit: int) -> list[str]:
    """Oversell, lost or duplicated orders, or a reconcile mismatch for the stampede product (queue drained)."""
    rows = shop.reconcile(pid)["products"]
    if len(rows) != 1:
        return [f"reconcile returned {len(rows)} rows for {pid}"]
    row = rows[0]
    counted: dict[str, Any] = next((p for p in shop.stats()["products"] if p["product_id"] == pid), {})
    problems = [f"reconcile mismatch: {p}" for p in row["problems"]]
    if row["left"] < 0:
        problems.append(f"oversell: stock left is {row['left']}")
    if row["persisted"] - initial > oversell_limit:
        problems.append(f"gate oversell <= {oversell_limit} failed: {row['persisted'] - initial} units oversold")
    if row["orders"] != row["persisted"]:
        # one unit per order in the stampede (per-user limit 1): more orders than units is a duplicate
        problems.append(f"{row['orders']} orders in MongoDB for {row['persisted']} units: duplicated or split orders")
    if counted.get("orders") != row["orders"]:
        problems.append(f"{counted.get('orders')} orders accepted but {row['orders']} in MongoDB: lost or duplicated")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="dev")
    parser.add_argument("--scenario", default="normal", help=f"one of {', '.join(SCENARIOS)}")
    parser.add_argument("--users", type=int, help="concurrent users (default: the scenario's)")
    parser.add_argument("--duration", help="run time, e.g. 30s or 3m (default: the scenario's)")
    parser.add_argument("--think", help="seconds between a user's requests, MIN-MAX (default: the scenario's)")
    parser.add_argument("--processes", type=int, help="Locust processes on this machine (default: one per core)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="a master and N local worker processes instead of --processes (distributed mode)",
    )
    parser.add_argument("--host", help="shop URL (default: the environment's load balancer)")
    args = parser.parse_args(argv)
    try:
        opts = Options.from_args(args)
    except LoadOptionError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2

    gates = Gates.from_thresholds()
    base, token = target(args.env, args.host)
    check_answers(args.env, base, args.host)
    shop = Shop(base, token)
    run_id = uuid.uuid4().hex[:6]
    extra: dict[str, str] = {buyers.KEY_VAR: buyers.key_for(args.env, args.host)}
    stampede_pid, stampede_stock = "", 0
    if opts.scenario == "stampede":
        stampede_stock = max(opts.users // 5, 1)
        stampede_pid = shop.create_product(f"stampede-{run_id}", 9.99, stampede_stock, per_user_limit=1)
        extra["SCALEMART_STAMPEDE_PRODUCT"] = stampede_pid
    else:
        pids = [shop.create_product(f"load-{run_id}-{i}", 5.0 + i, 1_000_000) for i in range(10)]
        extra["SCALEMART_PRODUCTS"] = ",".join(pids)

    prefix, code, cpu = run_locust(args.env, opts, base, token, gates, extra)
    agg = aggregated(prefix)
    generator = cpu.summary()
    problems: list[str] = []
    gates_report = Path(f"{prefix}-gates.json")
    if gates_report.exists():
        problems += json.loads(gates_report.read_text())["failures"]
    elif code != 0:
        problems.append(f"locust exited {code}")
    drain_s = wait_drained(shop)
    sold = ""
    if opts.scenario == "stampede":
        problems += check_stampede(shop, stampede_pid, stampede_stock, gates.oversell)
        left = int(shop.product(stampede_pid)["stock_left"])
        sold = f"{stampede_stock - left}/{stampede_stock}"

    print()
    print("| scenario | users | requests/s | p50 ms | p95 ms | p99 ms | errors | sold/stock |")
    print("|---|---|---|---|---|---|---|---|")
    err = agg["failures"] / agg["requests"] if agg["requests"] else 0.0
    users = "steps" if opts.scenario == "step" else str(opts.users)
    print(
        f"| {opts.scenario} | {users} | {agg['rps']:.0f} | {agg['p50']:.0f} | {agg['p95']:.0f} | "
        f"{agg['p99']:.0f} | {err:.2%} | {sold or '-'} |"
    )
    summary: dict[str, Any] = {
        "scenario": opts.scenario,
        "options": {**asdict(opts), "think": list(opts.think)},
        "host": base,
        **agg,
        "error_ratio": err,
        "sold": sold or None,
        "queue_drained_s": round(drain_s, 1),
        "generator": generator,
    }
    saturation = Path(f"{prefix}-saturation.json")
    if opts.scenario == "step":
        saturated_at = json.loads(saturation.read_text()) if saturation.exists() else None
        best = best_step(prefix, gates, saturated_at["users"] if saturated_at else None)
        floor = (
            f" before the load generator saturated at {saturated_at['users']} users (a floor)" if saturated_at else ""
        )
        print(
            f"\nstep shape: the most users that met the gates{floor} = {best['users']:.0f} "
            f"({best['rps']:.0f} requests/s, p95 {best['p95']:.0f} ms)"
        )
        summary["step"] = {"best": best, "saturated_at": saturated_at}
        generator["saturated"] = generator["saturated"] or saturated_at is not None
        problems = [p for p in problems if "gate" not in p]
    means = ", ".join(f"{v:.0f} %" for v in generator["mean_percent"].values())
    print(
        f"\nload generator: {generator['processes']} Locust processes, mean CPU {means or '-'} of a core each "
        f"(peak {generator['peak_percent']:.0f} %); "
        f"the machine's cores {generator['machine_busy_percent']:.0f} % busy"
    )
    if generator["saturated"]:
        print(f"{SATURATED} (a Locust process held above {generator['limit_percent']:.0f} % of a core)")
    print(f"queue drained {drain_s:.1f} s after the run")
    summary["problems"] = problems
    Path(f"{prefix}.json").write_text(
        json.dumps({**summary, "saturated_note": SATURATED if generator["saturated"] else None}, indent=2) + "\n"
    )
    print(f"\nreports: {prefix}.json, {prefix}_stats.csv, {prefix}_stats_history.csv, {prefix}.html")
    print("(load generator and servers share this machine's cores: see the CPU line above)")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
