"""Prometheus scrapes every target, loads every rule group; Alertmanager is ready; Perses asks for a
login, serves every dashboard and runs their panel queries through its datasource proxy."""

from __future__ import annotations

import time

import httpx
import yaml

from alert_rules import coverage
from dashboards import render_all
from dashboards.perses import PROJECT
from ops import secrets
from tests import perses
from tests.infra.conftest import Environment


def test_prometheus_scrapes_every_target_up(environment: Environment) -> None:
    base = environment.url_of("monitoring", "prometheus")
    down: list[str] = []
    deadline = time.monotonic() + 90  # a fresh environment needs a scrape interval or two
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/api/v1/targets", auth=environment.auth("prometheus"), timeout=10)
        targets = r.json()["data"]["activeTargets"]
        down = [
            f"{t['labels'].get('job')}/{t['labels'].get('instance')}: {t.get('lastError')}"
            for t in targets
            if t["health"] != "up"
        ]
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
    base = environment.url_of("monitoring", "prometheus")
    result = httpx.get(
        f"{base}/api/v1/query", params={"query": "up"}, auth=environment.auth("prometheus"), timeout=10
    ).json()["data"]["result"]
    scraped = {r["metric"]["instance"].split(":")[0] for r in result if r["value"][1] == "1"}
    for host in environment.group("app"):
        address = environment.hostvars(host)["private_address"]
        assert address in scraped or host in scraped, f"app host {host} ({address}) is not scraped"


def _query(environment: Environment, promql: str) -> list[dict]:
    base = environment.url_of("monitoring", "prometheus")
    r = httpx.get(f"{base}/api/v1/query", params={"query": promql}, auth=environment.auth("prometheus"), timeout=10)
    assert r.status_code == 200, f"{promql}: {r.status_code} {r.text[:300]}"
    return list(r.json()["data"]["result"])


def test_every_blackbox_probe_succeeds(environment: Environment) -> None:
    """probe_success{job="blackbox", probe, instance}: the shop through the balancer and every service's port."""
    deadline = time.monotonic() + 60
    while True:
        result = _query(environment, 'probe_success{job="blackbox"}')
        failed = [r["metric"] for r in result if r["value"][1] != "1"]
        if (result and not failed) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert {r["metric"].get("probe") for r in result} == {"shop-ready", "shop-product", "tcp"}, result
    assert not failed, f"probes failing: {failed}"
    lb = environment.hostvars(environment.group("lb")[0])["private_address"]
    instances = {r["metric"]["instance"] for r in result}
    assert f"http://{lb}:{environment.port('lb')}/health/ready" in instances, instances
    data = environment.hostvars(environment.group("data")[0])["private_address"]
    assert f"{data}:{environment.port('redis')}" in instances, instances


def test_balancer_answers_are_counted_by_status(environment: Environment) -> None:
    result = _query(environment, 'scalemart_lb_responses_total{job="lb-log"}')
    # The blackbox probes alone go through the balancer every scrape interval.
    assert any(r["metric"].get("code") == "200" and float(r["value"][1]) > 0 for r in result), result
    assert _query(environment, 'scalemart_lb_request_duration_seconds_count{job="lb-log"}'), "no duration histogram"


def test_every_host_reports_its_own_limits(environment: Environment) -> None:
    # A host that just joined (a scale-out) is scraped within a scrape interval of its timer's first run.
    addresses = {environment.hostvars(h)["private_address"] for h in environment.group("all")}
    deadline = time.monotonic() + 60
    while True:
        limits = {
            r["metric"]["instance"].split(":")[0]: float(r["value"][1])
            for r in _query(environment, 'scalemart_host_memory_limit_bytes{job="node"}')
        }
        if all(limits.get(a, 0) > 0 for a in addresses) or time.monotonic() > deadline:
            break
        time.sleep(3)
    for host in environment.group("all"):
        address = environment.hostvars(host)["private_address"]
        assert limits.get(address, 0) > 0, f"{host} ({address}) has no scalemart_host_memory_limit_bytes: {limits}"
    assert _query(environment, 'scalemart_host_limits_source{job="node"} == 1'), "no scalemart_host_limits_source"


def test_every_rule_group_is_loaded(environment: Environment) -> None:
    host = environment.host(environment.group("monitoring")[0])
    files = host.run("ls /etc/prometheus/rules/").stdout.split()
    expected = sum(
        len(yaml.safe_load(host.file(f"/etc/prometheus/rules/{name}").content_string)["groups"]) for name in files
    )
    base = environment.url_of("monitoring", "prometheus")
    groups = httpx.get(f"{base}/api/v1/rules", auth=environment.auth("prometheus"), timeout=10).json()["data"]["groups"]
    assert expected > 0, "no rule groups installed in /etc/prometheus/rules"
    assert len(groups) == expected, f"{len(groups)} rule groups loaded, {expected} in the rule files"
    assert all(g.get("lastError", "") == "" for r in groups for g in r.get("rules", [])), "a rule failed"


def test_alertmanager_cluster_is_ready(environment: Environment) -> None:
    base = environment.url_of("monitoring", "alertmanager")
    deadline = time.monotonic() + 90  # a fresh Alertmanager settles its gossip first
    auth = environment.auth("alertmanager")
    status = httpx.get(f"{base}/api/v2/status", auth=auth, timeout=10).json()
    while status["cluster"]["status"] == "settling" and time.monotonic() < deadline:
        time.sleep(3)
        status = httpx.get(f"{base}/api/v2/status", auth=auth, timeout=10).json()
    assert status["cluster"]["status"] == "ready", status["cluster"]


def test_prometheus_and_alertmanager_ask_every_client_for_the_credential(environment: Environment) -> None:
    for service, path in (("prometheus", "/api/v1/query?query=up"), ("alertmanager", "/api/v2/status")):
        url = environment.url_of("monitoring", service) + path
        assert httpx.get(url, timeout=10).status_code == 401, f"anonymous GET {url}"
        user, _ = secrets.web_credential(environment.name, service)
        assert httpx.get(url, auth=(user, "not-the-password"), timeout=10).status_code == 401, f"wrong password {url}"
        assert httpx.get(url, auth=environment.auth(service), timeout=10).status_code == 200, url
        # the health checks too: a scanner learns nothing from them
        assert httpx.get(environment.url_of("monitoring", service) + "/-/healthy", timeout=10).status_code == 401


# The exporters whose bookworm build takes a web config (README "Monitoring behind credentials"), where they run.
EXPORTERS_WITH_CREDENTIAL = {"node_exporter": "all", "mongodb_exporter": "data", "blackbox_exporter": "monitoring"}


def test_every_exporter_with_a_web_config_asks_for_the_credential(environment: Environment) -> None:
    credential = environment.auth("exporters")
    for exporter, group in EXPORTERS_WITH_CREDENTIAL.items():
        hosts = environment.group(group)
        assert hosts, f"no {group} host"
        for host in hosts:
            url = f"http://{environment.hostvars(host)['private_address']}:{environment.port(exporter)}/metrics"
            assert httpx.get(url, timeout=10).status_code == 401, f"{exporter} on {host}: anonymous GET {url}"
            assert httpx.get(url, auth=credential, timeout=10).status_code == 200, f"{exporter} on {host}: {url}"


def _perses(environment: Environment) -> tuple[str, str]:
    """The published dashboards URL and the admin password from the environment's vault."""
    password = secrets.load(environment.name).get("perses_admin_password")
    assert password, f"no perses_admin_password in {secrets.vault_file(environment.name)}: run `make up`"
    return environment.url("perses"), password


def test_perses_asks_for_a_login_and_lets_only_the_generated_admin_in(environment: Environment) -> None:
    base, password = _perses(environment)
    r = httpx.get(f"{base}/api/v1/projects/{PROJECT}/dashboards", timeout=10)
    assert r.status_code == 401, f"anonymous GET on the published Perses: {r.status_code} {r.text[:200]}"
    r = httpx.post(f"{base}{perses.LOGIN}", json={"login": "admin", "password": "admin"}, timeout=10)
    assert r.status_code in (400, 401), f"admin/admin on the published Perses: {r.status_code}"
    with perses.login(base, "admin", password) as client:
        served = perses.dashboards(client)
    assert sorted(served) == sorted(render_all()), f"Perses serves {sorted(served)}; built: {sorted(render_all())}"


def test_every_perses_panel_query_runs_through_the_datasource_proxy(environment: Environment) -> None:
    """Each served dashboard's panel queries, through Perses' proxy to the environment's Prometheus
    ($env the environment): every one accepted, and in each dashboard at least one with data (a fresh
    environment has no orders yet; the no-data check and the browser test after a load ask for all)."""
    base, password = _perses(environment)
    without_data = []
    with perses.login(base, "admin", password) as client:
        for name, dashboard in sorted(perses.dashboards(client).items()):
            answered = [
                coverage.has_data(perses.run(client, q, env=environment.name)["data"])
                for q in perses.panel_queries(dashboard)
            ]
            assert answered, f"{name}: no panel queries"
            if not any(answered):
                without_data.append(name)
    assert not without_data, f"dashboards where no panel query returned data: {without_data}"
