"""The error budget and a host's own memory limit, on dev (runs last: it stops the shop for a while).

- **Container memory**: a process on the worker host allocates memory until the host's working set is
  between HostHighMemoryUsage's warning and critical tiers of *its own cgroup limit*; the alert must fire
  for that host and no other. It starts first, so its `for` runs while the budget test below waits.
- **Error budget**: with the SLO windows compressed for this test only, the app is stopped behind the
  balancer until the availability budget burns at the page rate; the page must reach the email, webhook
  and SMS stand-ins, and resolve once the app is back.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from alert_rules import thresholds
from ops.inventory import Inventory
from tests.e2e.conftest import ENV_BUILD, Dev, _docker

HOG_TAG = "scalemart-e2e-memory-hog"
MEMORY_HOST_GROUP = "worker"


def inventory() -> Inventory:
    return Inventory.load(ENV_BUILD / "inventory.yml")


def node_instance(host: str) -> str:
    inv = inventory()
    return f"{inv.hostvars(host)['private_address']}:{inv.vars['scalemart_ports']['node_exporter']}"


def prometheus() -> str:
    inv = inventory()
    [host, *_] = inv.group("monitoring")
    return f"http://{inv.hostvars(host)['private_address']}:{inv.vars['scalemart_ports']['prometheus']}"


def query(expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus()}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def by_instance(expr: str) -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1]) for r in query(expr)}


@dataclass
class Hog:
    container: str
    instance: str
    started: float
    before: dict[str, float]


@pytest.fixture(scope="module")
def memory_hog(dev: Dev) -> Iterator[Hog]:
    """Fill the worker host's memory to halfway between the warning and critical tiers of its limit."""
    host = inventory().group(MEMORY_HOST_GROUP)[0]
    container, instance = dev.container(MEMORY_HOST_GROUP), node_instance(host)
    t = thresholds.load()["hosts.memory_ratio"]
    target = (t.warning + t.critical) / 2
    sel = f'{{instance="{instance}"}}'
    limit = by_instance(f"scalemart_host_memory_limit_bytes{sel}")[instance]
    used = by_instance(f"scalemart_host_memory_working_set_bytes{sel}")[instance]
    size = int(target * limit - used)
    assert size > 0, f"{instance} already uses {used / limit:.0%} of its {limit / 2**20:.0f} MiB limit"
    before = {
        "cgroup": used / limit,
        "meminfo": by_instance(f"1 - node_memory_MemAvailable_bytes{sel} / node_memory_MemTotal_bytes{sel}")[instance],
    }
    # Bytes written, not calloc'd: every page is touched, so it counts in the working set.
    code = f"import time; b = b'\\xff' * {size}; time.sleep(900)"
    assert _docker("exec", "-d", container, "python3", "-c", code, HOG_TAG).returncode == 0
    print(f"\nmemory hog: {size / 2**20:.0f} MiB on {instance} (limit {limit / 2**20:.0f} MiB, "
          f"working set {used / 2**20:.0f} MiB, target {target:.0%})", file=sys.stderr)
    try:
        yield Hog(container, instance, time.monotonic(), before)
    finally:
        _docker("exec", container, "pkill", "-f", HOG_TAG)


def test_memory_alert_fires_for_the_filled_host_and_no_other(memory_hog: Hog) -> None:
    t = thresholds.load()["hosts.memory_ratio"]
    deadline = memory_hog.started + t.for_seconds + 180
    firing: dict[str, float] = {}
    while time.monotonic() < deadline:
        firing = by_instance('ALERTS{alertname="HostHighMemoryUsage",alertstate="firing"}')
        if firing:
            break
        time.sleep(5)
    took = time.monotonic() - memory_hog.started
    sel = f'{{instance="{memory_hog.instance}"}}'
    after = {
        "cgroup": by_instance(f"scalemart_host_memory_working_set_bytes{sel} / "
                              f"scalemart_host_memory_limit_bytes{sel}")[memory_hog.instance],
        "meminfo": by_instance(f"1 - node_memory_MemAvailable_bytes{sel} / "
                               f"node_memory_MemTotal_bytes{sel}")[memory_hog.instance],
    }
    print(f"\nHostHighMemoryUsage: hog → firing {took:.0f} s for {sorted(firing)}; the host's own limit "
          f"{memory_hog.before['cgroup']:.0%} → {after['cgroup']:.0%}, /proc/meminfo (the whole machine) "
          f"{memory_hog.before['meminfo']:.0%} → {after['meminfo']:.0%}", file=sys.stderr)
    assert set(firing) == {memory_hog.instance}, f"HostHighMemoryUsage fires for {sorted(firing)}"
    assert t.warning < after["cgroup"] < t.critical
    # /proc/meminfo shows the machine: the hog moves it by a few per cent at most, never past the warning
    assert after["meminfo"] < t.warning
