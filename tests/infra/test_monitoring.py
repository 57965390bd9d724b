"""Prometheus scrapes every target, loads every rule group; Alertmanager is ready; Grafana is provisioned."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml

from tests.infra.conftest import Environment


def _monitoring_address(environment: Environment) -> str:
    hosts = environment.group("monitoring")
    assert hosts, "no monitoring host in the inventory"
    return str(environment.hostvars(hosts[0])["private_address"])


def test_prometheus_scrapes_every_target_up(environment: Environment) -> None:
    base = f"http://{_monitoring_address(environment)}:9090"
    down: list[str] = []
    deadline = time.monotonic() + 90  # a fresh environment needs a scrape interval or two
    while time.monotonic() < deadline:
        targets = httpx.get(f"{base}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        down = [f"{t['labels'].get('job')}/{t['labels'].get('instance')}: {t.get('lastError')}"
                for t in targets if t["health"] != "up"]
        if targets and not down:
            break
        time.sleep(3)
    assert targets, "Prometheus has no targets"
    assert not down, "targets not up:\n" + "\n".join(down)
    jobs = {t["labels"]["job"] for t in targets}
    for group in ("app", "worker", "data", "lb", "monitoring"):
        assert environment.group(group), group
    assert len(targets) >= len(environment.group("all")), f"fewer targets than hosts: {sorted(jobs)}"


def test_every_app_host_is_scraped(environment: Environment) -> None:
    base = f"http://{_monitoring_address(environment)}:9090"
    result = httpx.get(f"{base}/api/v1/query", params={"query": "up"}, timeout=10).json()["data"]["result"]
    scraped = {r["metric"]["instance"].split(":")[0] for r in result if r["value"][1] == "1"}
    for host in environment.group("app"):
        address = environment.hostvars(host)["private_address"]
        assert address in scraped or host in scraped, f"app host {host} ({address}) is not scraped"


def test_every_rule_group_is_loaded(environment: Environment) -> None:
    host = environment.host(environment.group("monitoring")[0])
    files = host.run("ls /etc/prometheus/rules/").stdout.split()
    expected = sum(len(yaml.safe_load(host.file(f"/etc/prometheus/rules/{name}").content_string)["groups"])
                   for name in files)
    base = f"http://{_monitoring_address(environment)}:9090"
    groups = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert expected > 0, "no rule groups installed in /etc/prometheus/rules"
    assert len(groups) == expected, f"{len(groups)} rule groups loaded, {expected} in the rule files"
    assert all(g.get("lastError", "") == "" for r in groups for g in r.get("rules", [])), "a rule failed"


def test_alertmanager_cluster_is_ready(environment: Environment) -> None:
    base = f"http://{_monitoring_address(environment)}:9093"
    deadline = time.monotonic() + 90  # a fresh Alertmanager settles its gossip first
    status = httpx.get(f"{base}/api/v2/status", timeout=10).json()
    while status["cluster"]["status"] == "settling" and time.monotonic() < deadline:
        time.sleep(3)
        status = httpx.get(f"{base}/api/v2/status", timeout=10).json()
    assert status["cluster"]["status"] == "ready", status["cluster"]


def test_grafana_has_every_dashboard_and_a_healthy_datasource(environment: Environment) -> None:
    from ops import secrets

    password = secrets.load(environment.name)["grafana_admin_password"]
    base = f"http://{_monitoring_address(environment)}:3000"
    assert httpx.get(f"{base}/api/health", timeout=10).json()["database"] == "ok"
    assert httpx.get(f"{base}/api/search", auth=("admin", "admin"), timeout=10).status_code == 401
    dashboards = httpx.get(f"{base}/api/search", params={"type": "dash-db"}, auth=("admin", password),
                           timeout=10).json()
    host = environment.host(environment.group("monitoring")[0])
    provisioned = host.run("ls /var/lib/grafana/dashboards/*.json | wc -l").stdout.strip()
    if not provisioned.isdigit() or int(provisioned) == 0:
        pytest.fail("no dashboard JSON provisioned in /var/lib/grafana/dashboards")
    assert len(dashboards) == int(provisioned), [d["title"] for d in dashboards]


def test_grafana_datasource_is_healthy_and_one_panel_of_every_dashboard_has_data(environment: Environment) -> None:
    """Through the Grafana the role installed: its datasource health check, then each dashboard's panels in
    order until one query comes back with data from the environment's Prometheus."""
    from ops import secrets

    password = secrets.load(environment.name)["grafana_admin_password"]
    base = f"http://{_monitoring_address(environment)}:3000"
    now_ms = int(time.time() * 1000)
    without_data = []
    with httpx.Client(base_url=base, auth=("admin", password), timeout=30) as c:
        sources = [d for d in c.get("/api/datasources").json() if d["type"] == "prometheus"]
        assert len(sources) == 1, sources
        uid = sources[0]["uid"]
        health = c.get(f"/api/datasources/uid/{uid}/health").json()
        assert health.get("status") == "OK", health
        for found in c.get("/api/search", params={"type": "dash-db"}).json():
            dashboard = c.get(f"/api/dashboards/uid/{found['uid']}").json()["dashboard"]
            tried = []
            for panel in dashboard["panels"]:
                for target in panel.get("targets") or []:
                    query = {"refId": target["refId"], "datasource": {"type": "prometheus", "uid": uid},
                             "expr": target["expr"].replace("$env", environment.name), "intervalMs": 15000,
                             "maxDataPoints": 100, "instant": True, "range": False}
                    r = c.post("/api/ds/query", json={"from": str(now_ms - 10 * 60_000), "to": str(now_ms),
                                                      "queries": [query]})
                    result = r.json().get("results", {}).get(target["refId"], {})
                    assert r.status_code == 200 and "error" not in result, (
                        f"{dashboard['title']} / {panel['title']}: {r.text[:400]}")
                    tried.append(panel["title"])
                    if any(v is not None for f in result.get("frames", []) for col in f["data"]["values"][1:]
                           for v in col):
                        break
                else:
                    continue
                break
            else:
                without_data.append(f"{dashboard['title']} (tried: {', '.join(tried)})")
    assert not without_data, "dashboards where no panel query returned data:\n" + "\n".join(without_data)
