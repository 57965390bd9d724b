"""Scale `dev` out to two app replicas, restart them one by one, then stop one, all under a light load
(runs last: it changes dev).

A rolling restart must fail no request. After the stop the balancer must keep serving (no 5xx beyond the
requests in flight at the stop) and Prometheus's target-down alert must reach email and the webhook as a
warning, never the SMS pager.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from tests.e2e.conftest import ENV, ENV_BUILD, Dev, _docker, _run
from tests.e2e.test_dev_environment import _mentions, _wait_for
from tests.e2e.traffic import CLIENTS, LightLoad


def _main_pid(container: str) -> str:
    return _docker("exec", container, "systemctl", "show", "-p", "MainPID", "--value", "scalemart-app").stdout.strip()


def test_stopping_one_of_two_app_replicas_keeps_serving_and_warns_email_and_webhook_only(
    dev: Dev, tmp_path: Path
) -> None:
    overrides = tmp_path / "two-apps.yaml"
    overrides.write_text(yaml.safe_dump({"config": {"scalemart:hosts": {"app": {"count": 2}}}}))
    code, out, took = _run(
        "-m",
        "ops",
        "up",
        ENV,
        env={"SCALEMART_EXTRA_VARS": str(dev.vars_file), "SCALEMART_STACK_OVERRIDES": str(overrides)},
    )
    (ENV_BUILD / "logs" / "e2e-scale-out.log").write_text(out)
    assert code == 0, f"scaling dev out to two app replicas failed:\n{out[-6000:]}"
    print(f"\nscale-out to 2 app replicas (make up, verified): {took:.0f} s", file=sys.stderr)
    assert re.search(r"Container sm-dev-app-2-container created", out), "the scale-out should add app-2"
    assert not re.search(r"[-~+]+ \d+ (deleted|updated|replaced)", out), "the scale-out should touch nothing else"
    app2 = dev.container("app", 1)
    shop = dev.outputs["urls"]["shop"]

    # A rolling restart under the same load: each app host drained, restarted, put back; no request fails.
    apps = [dev.container("app", 0), app2]
    pids = {c: _main_pid(c) for c in apps}
    with LightLoad(shop) as load:
        code, out, took = _run("-m", "ops", "restart", ENV)
    (ENV_BUILD / "logs" / "e2e-rolling-restart.log").write_text(out)
    assert code == 0, f"make restart failed:\n{out[-6000:]}"
    statuses = Counter(s for _, s in load.results)
    print(
        f"\nrolling restart of 2 app hosts: {took:.0f} s, {sum(statuses.values())} requests: {dict(statuses)}, "
        f"{len(load.resent)} resent after a closed keep-alive connection",
        file=sys.stderr,
    )
    assert statuses[200] >= 50 and set(statuses) == {200}, f"requests failed during the rolling restart: {statuses}"
    assert all(_main_pid(c) != pids[c] for c in apps), "every app host's API should have restarted"

    with LightLoad(shop) as load:
        time.sleep(10)
        t0 = time.monotonic()
        assert _docker("exec", app2, "systemctl", "stop", "scalemart-app").returncode == 0
        try:
            time.sleep(60)
        finally:
            load.stop.set()
        before = Counter(s for t, s in load.results if t < t0)
        after = Counter(s for t, s in load.results if t >= t0)
    try:
        assert before and set(before) == {200}, f"before the stop: {dict(before)}"
        failed = sum(n for s, n in after.items() if s == 0 or s >= 500)
        print(f"one replica stopped: {sum(after.values())} requests in 60 s, {failed} failed", file=sys.stderr)
        assert after[200] >= 100, f"the balancer stopped serving: {dict(after)}"
        assert failed <= CLIENTS, f"more failures than requests in flight at the stop: {dict(after)}"

        # 5 m of `for` (thresholds.yml hosts.target_down), then the route's group wait
        fired = _wait_for(dev, t0, {"email", "webhook"}, _mentions("PrometheusTargetDown", "firing"), timeout=480)
        assert set(fired) == {"email", "webhook"}, f"PrometheusTargetDown reached only {sorted(fired)}"
        hooks = [
            r.body
            for r in dev.sinks.inbox.since(t0, "webhook")
            if _mentions("PrometheusTargetDown", "firing")("webhook", r.body)
        ]
        alerts = [a for body in hooks for a in body["alerts"] if a["labels"]["alertname"] == "PrometheusTargetDown"]
        assert {a["labels"]["job"] for a in alerts} == {"scalemart-app"}
        assert {a["labels"]["severity"] for a in alerts} == {"warning"}
        paged = [r for r in dev.sinks.inbox.since(t0, "sms") if "PrometheusTargetDown" in r.body.get("form", "")]
        assert not paged, "a warning must not page by SMS"
        print(
            f"PrometheusTargetDown: stop → email {fired['email']:.0f} s, webhook {fired['webhook']:.0f} s",
            file=sys.stderr,
        )
    finally:
        assert _docker("exec", app2, "systemctl", "start", "scalemart-app").returncode == 0
