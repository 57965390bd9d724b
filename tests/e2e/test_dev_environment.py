"""End to end on the `dev` environment: `make up` to a verified environment, a no-op second
`up`, and the alert pipeline from a real fault to a real notification.

The receivers run on the control machine (tests/e2e/sinks.py) on the environment network's
gateway address. The environment stays up for the load tests that follow and for a person to
look at (`make down ENV=dev` removes it); under CI it is purged at the end of the session.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import httpx
import psutil

from tests.e2e.conftest import ENV, Dev, _docker, _run
from tests.e2e.sinks import sms_text


def test_up_verifies_the_environment_and_prints_the_urls(dev: Dev) -> None:
    assert "verify: ok" in dev.up_output
    assert "is up and verified" in dev.up_output
    shop = dev.outputs["urls"]["shop"]
    assert shop.startswith("http://127.0.0.1:")
    assert shop in dev.up_output
    assert "credentials" in dev.up_output
    # The dashboards: their URL, and where the password is.
    perses = dev.outputs["urls"]["perses"]
    assert re.search(
        rf"perses\s+{re.escape(perses)}\s+\(dashboards: log in as admin, password perses_admin_password "
        rf"from `make credentials ENV={ENV}`\)",
        dev.up_output,
    ), dev.up_output[-1500:]


def test_published_ports_go_through_iptables_not_docker_proxy(dev: Dev) -> None:
    # The bootstrap's engine settings (userland-proxy off): the shop answers on its published port
    # while no docker-proxy process copies the bytes.
    shop = dev.outputs["urls"]["shop"]
    assert httpx.get(f"{shop.rstrip('/')}/health/live", timeout=10).status_code == 200
    proxies = [
        " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "docker-proxy"
    ]
    assert not proxies, f"published ports still go through Docker's userland proxy: {proxies}"


def test_warm_up_skips_the_converge_when_nothing_changed(dev: Dev) -> None:
    code, out, took = _run("-m", "ops", "up", ENV, env={"SCALEMART_EXTRA_VARS": str(dev.vars_file)})
    assert code == 0, out[-4000:]
    assert re.search(r"configure: skipped, nothing it depends on changed since the converge of ", out), out[-4000:]
    assert "PLAY RECAP" not in out, "the playbooks ran although no input changed"
    assert re.search(r"verify: ok in", out), "the warm up did not verify the environment"
    print(f"\nwarm make up {ENV}: {took:.0f} s", file=sys.stderr)


def test_second_up_changes_nothing(dev: Dev) -> None:
    # FORCE=1: the playbooks run although nothing changed, and must change nothing.
    code, out, took = _run("-m", "ops", "up", ENV, "--force", env={"SCALEMART_EXTRA_VARS": str(dev.vars_file)})
    assert code == 0, out[-4000:]
    # `ops up` runs site.yml for the monitoring hosts and the others at once, each line tagged
    recap = re.findall(r"^\s*(?:\[\w+\]\s+)?(\S+)\s*: ok=\d+\s+changed=(\d+)", out, re.M)
    assert recap, "no PLAY RECAP in the output"
    changed = {host: int(n) for host, n in recap if int(n)}
    assert not changed, f"a second up changed hosts: {changed}"
    assert re.search(r"(\d+) unchanged", out) and not re.search(r"[+~-] \d+ (created|updated|deleted)", out)
    print(f"\nsecond make up {ENV}: {took:.0f} s", file=sys.stderr)


def _wait_for(dev: Dev, t0: float, kinds: set[str], predicate: Any, timeout: float) -> dict[str, float]:
    """Seconds from t0 to the first matching notification of each kind."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and set(found) != kinds:
        for kind in kinds - set(found):
            hits = [r for r in dev.sinks.inbox.since(t0, kind) if predicate(kind, r.body)]
            if hits:
                found[kind] = hits[0].at - t0
        time.sleep(1)
    return found


def _mentions(alertname: str, status: str) -> Any:
    def match(kind: str, body: dict[str, Any]) -> bool:
        if kind == "email":
            return alertname in body["text"] and (status != "resolved" or "RESOLVED" in body["subject"].upper())
        if kind == "sms":
            return alertname in sms_text(body, status)
        alerts = body.get("alerts", [])
        return body.get("status") == status and any(a["labels"].get("alertname") == alertname for a in alerts)

    return match


def test_redis_down_pages_critical_and_resolves(dev: Dev) -> None:
    data = dev.container("data")
    t0 = time.monotonic()
    assert _docker("exec", data, "systemctl", "stop", "redis-server").returncode == 0
    try:
        fired = _wait_for(dev, t0, {"email", "webhook", "sms"}, _mentions("RedisDown", "firing"), timeout=300)
    finally:
        assert _docker("exec", data, "systemctl", "start", "redis-server").returncode == 0
    t1 = time.monotonic()
    assert set(fired) == {"email", "webhook", "sms"}, f"RedisDown reached only {sorted(fired)}"
    print(
        f"\nRedisDown: fault → first notification {min(fired.values()):.0f} s "
        f"(email {fired['email']:.0f} s, webhook {fired['webhook']:.0f} s, sms {fired['sms']:.0f} s)",
        file=sys.stderr,
    )
    resolved = _wait_for(dev, t1, {"webhook"}, _mentions("RedisDown", "resolved"), timeout=300)
    assert "webhook" in resolved, "no resolved notification after Redis came back"
    print(f"RedisDown: recovery → resolved notification {resolved['webhook']:.0f} s", file=sys.stderr)


def test_watchdog_heartbeat_keeps_arriving(dev: Dev) -> None:
    beats = [r.at for r in dev.sinks.inbox.items if r.kind == "heartbeat"]
    if len(beats) < 2:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and len(beats) < 2:
            time.sleep(5)
            beats = [r.at for r in dev.sinks.inbox.items if r.kind == "heartbeat"]
    assert len(beats) >= 2, f"{len(beats)} Watchdog heartbeats since the environment came up"
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert max(gaps) < 150, f"the heartbeat stopped for {max(gaps):.0f} s"
