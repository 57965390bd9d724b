"""Short load runs against the dev environment's load balancer, with the gates on (issue: load tests)."""

from __future__ import annotations

import sys

from tests.e2e.conftest import ENV, Dev, _run


def test_stampede_never_oversells(dev: Dev) -> None:
    code, out, took = _run("-m", "loadtests.run", "--env", ENV, "--scenario", "stampede", "--users", "500",
                           "--duration", "20s", timeout=600)
    print(f"\n{out[-1500:]}", file=sys.stderr)
    assert code == 0, out[-4000:]  # run.py exits non-zero on any oversell, lost or duplicated order
    assert "| stampede | 500 |" in out


def test_normal_traffic_meets_the_gates(dev: Dev) -> None:
    code, out, took = _run("-m", "loadtests.run", "--env", ENV, "--scenario", "normal", "--users", "50",
                           "--duration", "20s", timeout=600)
    print(f"\n{out[-1500:]}", file=sys.stderr)
    assert code == 0, out[-4000:]
