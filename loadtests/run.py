"""`make load`: run a Locust scenario headless against an environment and apply the gates.

    python -m loadtests.run --env dev --scenario normal|stampede|step [--users N] [--duration 20s]
                            [--workers N] [--host URL]

Prepares the products through the admin API, runs Locust (one master and N local workers when
--workers is given), writes CSV stats, full history and the HTML report to build/<env>/load/,
prints a summary table, and exits non-zero when a gate fails or a sale oversold.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass
class Gates:
    p95_ms: float
    error_ratio: float
    oversell: int

    @classmethod
    def from_thresholds(cls) -> Gates:
        sys.path.insert(0, str(ROOT))
        from alert_rules import thresholds

        th = thresholds.load()
        return cls(p95_ms=th["loadtest.p95_ms"].values["limit"],
                   error_ratio=th["loadtest.error_ratio"].values["limit"],
                   oversell=int(th["loadtest.oversell_units"].values["limit"]))


def target(env: str, host: str | None) -> tuple[str, str]:
    """The shop URL and the admin token for `env` (or the given host, with the token from the environment)."""
    token = os.environ.get("SCALEMART_ADMIN_TOKEN", "")
    if host:
        if not token:
            raise SystemExit("--host needs SCALEMART_ADMIN_TOKEN in the environment")
        return host.rstrip("/"), token
    outputs = ROOT / "build" / env / "outputs.json"
    if not outputs.exists():
        raise SystemExit(f"{outputs} is missing: bring the environment up first with `make up ENV={env}`")
    shop = json.loads(outputs.read_text())["urls"]["shop"]
    if not token:
        from ops import secrets

        token = secrets.load(env)["scalemart_admin_token"]
    return shop.rstrip("/"), token


class Shop:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})

    def _ok(self, resp: httpx.Response) -> dict:
        if resp.status_code >= 300:
            raise SystemExit(f"{resp.request.method} {resp.request.url} answered {resp.status_code}: {resp.text[:300]}")
        return dict(resp.json())

    def create_product(self, pid: str, price: float, stock: int, per_user_limit: int = 5) -> str:
        body = {"id": pid, "name": pid, "price": price, "stock": stock, "per_user_limit": per_user_limit,
                "open": True}
        return str(self._ok(self.http.post("/api/admin/products", json=body))["id"])

    def product(self, pid: str) -> dict:
        return self._ok(self.http.get(f"/api/products/{pid}"))

    def stats(self) -> dict:
        return self._ok(self.http.get("/api/admin/stats"))

    def reconcile(self, pid: str) -> dict:
        """The app's reconcile over HTTP: Redis stock and counters against the orders in MongoDB."""
        resp = self.http.get("/api/admin/reconcile", params={"product_id": pid, "require_drained": "true"},
                             timeout=300)
        return self._ok(resp)


def run_locust(env: str, scenario: str, base: str, token: str, users: int, duration: str, workers: int,
               extra_env: dict[str, str]) -> tuple[Path, int]:
    out = ROOT / "build" / env / "load"
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / scenario
    locust = ROOT / ".venv" / "bin" / "locust"
    spawn_rate = max(users // 5, 1) if scenario != "stampede" else users
    common = ["-f", str(LOCUSTFILE)]
    cmd = [str(locust), *common, "--headless", "--host", base, "-t", duration,
           "--csv", str(prefix), "--csv-full-history", "--html", str(prefix) + ".html", "--only-summary",
           "--stop-timeout", "5", "--loglevel", "WARNING"]
    if scenario != "step":
        cmd += ["-u", str(users), "-r", str(spawn_rate)]
    run_env = {**os.environ, **extra_env, "PYTHONPATH": str(ROOT), "SCALEMART_SCENARIO": scenario,
               "SCALEMART_ADMIN_TOKEN": token, "SCALEMART_GATES_REPORT": str(prefix) + "-gates.json"}
    worker_procs: list[subprocess.Popen[bytes]] = []
    if workers > 0:
        cmd += ["--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1"]
        for _ in range(workers):
            worker_procs.append(subprocess.Popen([str(locust), *common, "--worker", "--master-host", "127.0.0.1",
                                                  "--loglevel", "WARNING"], env=run_env))
    print(f"locust: {scenario}, {users} users, {duration}, {workers or 'no'} workers → {base}", flush=True)
    code = subprocess.run(cmd, env=run_env, check=False).returncode
    for proc in worker_procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return prefix, code


def aggregated(prefix: Path) -> dict[str, float]:
    with open(f"{prefix}_stats.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                return {
                    "requests": float(row["Request Count"]), "failures": float(row["Failure Count"]),
                    "rps": float(row["Requests/s"]), "p50": float(row["50%"]), "p95": float(row["95%"]),
                    "p99": float(row["99%"]),
                }
    raise SystemExit(f"{prefix}_stats.csv has no Aggregated row")


def best_step(prefix: Path, gates: Gates) -> dict[str, float]:
    """The highest user count whose samples all met the gates, from the full history."""
    per_users: dict[int, list[dict[str, str]]] = {}
    with open(f"{prefix}_stats_history.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated" and row["95%"] not in ("N/A", ""):
                per_users.setdefault(int(row["User Count"]), []).append(row)
    best = {"users": 0.0, "rps": 0.0, "p95": 0.0}
    for users in sorted(per_users):
        rows = per_users[users][1:] or per_users[users]  # the first sample mixes two steps
        p95 = max(float(r["95%"]) for r in rows)
        reqs = float(rows[-1]["Total Request Count"])
        fails = float(rows[-1]["Total Failure Count"])
        if p95 >= gates.p95_ms or (reqs and fails / reqs >= gates.error_ratio):
            break
        best = {"users": float(users), "rps": max(float(r["Requests/s"]) for r in rows), "p95": p95}
    return best


def wait_drained(shop: Shop, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    stats = shop.stats()
    while time.monotonic() < deadline:
        stats = shop.stats()
        if int(stats["totals"]["queued_orders"]) == 0:
            return stats
        time.sleep(1)
    raise SystemExit(f"the order queue did not drain within {timeout:.0f} s: "
                     f"{stats['totals']['queued_orders']} orders left")


def check_stampede(shop: Shop, pid: str, initial: int, oversell_limit: int) -> list[str]:
    """Oversell, lost or duplicated orders, or a reconcile mismatch for the stampede product."""
    wait_drained(shop)
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
    parser = argparse.ArgumentParser(prog="python -m loadtests.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="dev")
    parser.add_argument("--scenario", choices=["normal", "stampede", "step"], default="normal")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--workers", type=int, default=0, help="local Locust worker processes (distributed mode)")
    parser.add_argument("--host", help="shop URL (default: the environment's load balancer)")
    args = parser.parse_args(argv)

    gates = Gates.from_thresholds()
    base, token = target(args.env, args.host)
    shop = Shop(base, token)
    run_id = uuid.uuid4().hex[:6]
    extra: dict[str, str] = {"SCALEMART_GATE_P95_MS": str(gates.p95_ms),
                             "SCALEMART_GATE_ERROR_RATIO": str(gates.error_ratio)}
    stampede_pid, stampede_stock = "", 0
    if args.scenario == "stampede":
        stampede_stock = max(args.users // 5, 1)
        stampede_pid = shop.create_product(f"stampede-{run_id}", 9.99, stampede_stock, per_user_limit=1)
        extra["SCALEMART_STAMPEDE_PRODUCT"] = stampede_pid
    else:
        pids = [shop.create_product(f"load-{run_id}-{i}", 5.0 + i, 1_000_000) for i in range(10)]
        extra["SCALEMART_PRODUCTS"] = ",".join(pids)

    prefix, code = run_locust(args.env, args.scenario, base, token, args.users, args.duration, args.workers, extra)
    agg = aggregated(prefix)
    problems: list[str] = []
    gates_report = Path(f"{prefix}-gates.json")
    if gates_report.exists():
        problems += json.loads(gates_report.read_text())["failures"]
    elif code != 0:
        problems.append(f"locust exited {code}")
    sold = ""
    if args.scenario == "stampede":
        problems += check_stampede(shop, stampede_pid, stampede_stock, gates.oversell)
        left = int(shop.product(stampede_pid)["stock_left"])
        sold = f"{stampede_stock - left}/{stampede_stock}"

    print()
    print("| scenario | users | requests/s | p50 ms | p95 ms | p99 ms | errors | sold/stock |")
    print("|---|---|---|---|---|---|---|---|")
    err = agg["failures"] / agg["requests"] if agg["requests"] else 0.0
    users = "steps" if args.scenario == "step" else str(args.users)
    print(f"| {args.scenario} | {users} | {agg['rps']:.0f} | {agg['p50']:.0f} | {agg['p95']:.0f} | "
          f"{agg['p99']:.0f} | {err:.2%} | {sold or '-'} |")
    if args.scenario == "step":
        best = best_step(prefix, gates)
        print(f"\nstep shape: the most users that met the gates = {best['users']:.0f} "
              f"({best['rps']:.0f} requests/s, p95 {best['p95']:.0f} ms)")
        problems = [p for p in problems if "gate" not in p]
    print(f"\nreports: {prefix}_stats.csv, {prefix}_stats_history.csv, {prefix}.html")
    print("(load generator and servers share this machine's 2 cores)")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
