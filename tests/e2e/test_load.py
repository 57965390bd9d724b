"""Short load runs against the dev environment's load balancer, with the gates on.

Correctness gates (error rate, oversell, lost or duplicated orders, reconcile) must pass. The
latency gate runs too and its verdict is printed with the measured p95, but a miss does not fail
this test: `make test` shares 2 noisy cores between Locust and five hosts, and speed targets are
measured by benchmarks (`make load`, docs/benchmarks.md), not asserted in the test suite.
"""

from __future__ import annotations

import json
import os
import re
import sys

from loadtests.run import SATURATED
from tests.e2e.conftest import ENV, ENV_BUILD, Dev, _run


def _failures_other_than_latency(out: str) -> list[str]:
    failed = re.findall(r"^(?:FAILED|GATE FAILED): (.+)$", out, re.M)
    return [f for f in failed if not f.startswith("gate p95")]


def _load(*args: str) -> str:
    code, out, _took = _run("-m", "loadtests.run", "--env", ENV, *args, timeout=600)
    print(f"\n{out[-1800:]}", file=sys.stderr)
    assert code == 0 or not _failures_other_than_latency(out), out[-4000:]
    assert code == 0 or "gate p95" in out, f"loadtests.run exited {code} without naming a gate:\n{out[-4000:]}"
    _says_whether_the_generator_saturated(args, out)
    return out


def _says_whether_the_generator_saturated(args: tuple[str, ...], out: str) -> None:
    """The summary and the JSON report agree on the generator's CPU and whether it saturated."""
    scenario = args[args.index("--scenario") + 1]
    report = json.loads((ENV_BUILD / "load" / f"{scenario}.json").read_text())
    gen = report["generator"]
    assert gen["processes"] >= 1 and gen["mean_percent"], f"no Locust process was sampled: {gen}"
    assert re.search(rf"^load generator: {gen['processes']} Locust processes, mean CPU ", out, re.M), out[-2000:]
    assert (SATURATED in out) is gen["saturated"], f"summary and report disagree on saturation: {gen}"
    assert report["saturated_note"] == (SATURATED if gen["saturated"] else None)
    assert report["queue_drained_s"] >= 0 and re.search(r"^queue drained [\d.]+ s after the run$", out, re.M)


def test_stampede_never_oversells(dev: Dev) -> None:
    out = _load("--scenario", "stampede", "--users", "500", "--duration", "20s")
    row = re.search(r"^\| stampede \| 500 \| .* \| (\d+)/(\d+) \|$", out, re.M)
    assert row, "no summary row for the stampede"
    sold, stock = int(row.group(1)), int(row.group(2))
    assert sold == stock == 100, f"sold {sold} of {stock}: a crowd of 500 for 100 units must sell out exactly"


def test_normal_traffic_meets_the_correctness_gates(dev: Dev) -> None:
    out = _load("--scenario", "normal", "--users", "200", "--duration", "20s")
    assert re.search(r"^\| normal \| 200 \| \d+ \|", out, re.M), "no summary row for the normal run"
    assert f", {os.cpu_count()} processes → " in out, "make load runs one Locust process per core by default"


def test_distributed_mode_runs_a_master_and_workers(dev: Dev) -> None:
    out = _load("--scenario", "normal", "--users", "20", "--duration", "10s", "--workers", "2")
    assert "a master and 2 workers" in out
