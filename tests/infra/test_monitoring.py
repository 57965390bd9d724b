"""Prometheus scrapes every target, loads every rule group; Alertmanager is ready; Grafana's provisioning
files are on the monitoring host and its dashboards' queries return data on Prometheus."""

from __future__ import annotations

import json
import time

import httpx
import yaml

from alert_rules import coverage
from dashboards import render_all
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


GRAFANA_INI = "/etc/grafana/grafana.ini"
GRAFANA_CHECK = "/usr/local/lib/scalemart/grafana-check-provisioning"
DATASOURCES = "/etc/grafana/provisioning/datasources/prometheus.yaml"
DASHBOARDS_DIR = "/var/lib/grafana/dashboards"

# GET a URL from the host itself (its python3; the role checks its files with it too): status, then body.
_HTTP_GET = (
    "import sys,urllib.request,urllib.error\n"
    "try:\n r=urllib.request.urlopen(sys.argv[1],timeout=10); print(r.status); print(r.read().decode())\n"
    "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n"
)


def _installed_dashboards(environment: Environment) -> dict[str, dict]:
    """{file name: dashboard JSON} of the dashboards the grafana role installed on the monitoring host."""
    host = environment.host(environment.group("monitoring")[0])
    listing = host.run(f"ls -1 {DASHBOARDS_DIR}")
    assert listing.rc == 0, f"{DASHBOARDS_DIR} on the monitoring host: {listing.stderr}"
    names = [n for n in listing.stdout.split() if n.endswith(".json")]
    return {n: json.loads(host.file(f"{DASHBOARDS_DIR}/{n}").content_string) for n in names}


def test_grafana_provisioning_has_every_dashboard_a_reachable_datasource_and_no_default_password(
        environment: Environment) -> None:
    """The grafana role's files on the monitoring host (no Grafana server runs): every dashboard
    `python -m dashboards` generates, a datasource whose URL is a ready Prometheus seen from that host,
    and a grafana.ini readable by the service group only that does not keep Grafana's admin/admin."""
    host = environment.host(environment.group("monitoring")[0])
    installed = _installed_dashboards(environment)
    expected = {f"{uid}.json": data for uid, data in render_all().items()}
    missing, unexpected = sorted(set(expected) - set(installed)), sorted(set(installed) - set(expected))
    assert not missing and not unexpected, (
        f"{DASHBOARDS_DIR} on the monitoring host: missing {missing}, not generated by `dashboards` {unexpected}")
    for name, data in installed.items():
        assert (data.get("uid"), data.get("title")) == (expected[name]["uid"], expected[name]["title"]), name

    provisioning = yaml.safe_load(host.file(DATASOURCES).content_string)
    sources = [d for d in provisioning.get("datasources") or [] if d.get("type") == "prometheus"]
    assert len(sources) == 1, f"{DATASOURCES}: {sources}"
    url = str(sources[0]["url"]).rstrip("/")
    out = host.run("python3 -c %s %s", _HTTP_GET, f"{url}/-/ready")
    status = out.stdout.split("\n", 1)[0].strip()
    assert out.rc == 0 and status == "200", (
        f"{url}/-/ready from the monitoring host (the datasource's URL): {out.stdout[:400]}{out.stderr[-400:]}")

    ini = host.file(GRAFANA_INI)
    assert ini.exists, f"{GRAFANA_INI} is missing"
    assert ini.mode == 0o640, f"{GRAFANA_INI} is mode {ini.mode:o}, not 640"
    # The role's own `validate:` on the live file: admin_password set (unset, Grafana falls back to
    # admin/admin) and not `admin`, with Grafana's quoting taken off.
    out = host.run("%s --kind=ini --replaces=%s %s", GRAFANA_CHECK, GRAFANA_INI, GRAFANA_INI)
    assert out.rc == 0, out.stdout + out.stderr


def test_one_panel_query_of_every_dashboard_returns_data_on_prometheus(environment: Environment) -> None:
    """Each installed dashboard's panels in order, their queries run on the environment's Prometheus
    ($env the environment, Grafana's other variables as coverage.GRAFANA_VARS gives them) until one
    comes back with data."""
    base = f"http://{_monitoring_address(environment)}:9090"
    without_data = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for name, dashboard in sorted(_installed_dashboards(environment).items()):
            tried = []
            for panel in dashboard.get("panels") or []:
                for target in panel.get("targets") or []:
                    if not target.get("expr"):
                        continue
                    expr = target["expr"].replace("${env}", environment.name).replace("$env", environment.name)
                    r = c.get("/api/v1/query", params={"query": coverage.substitute(expr)})
                    body = r.json()
                    assert r.status_code == 200 and body.get("status") == "success", (
                        f"{dashboard['title']} / {panel['title']}: {r.text[:400]}")
                    tried.append(panel["title"])
                    if coverage.has_data(body["data"]):
                        break
                else:
                    continue
                break
            else:
                without_data.append(f"{dashboard.get('title', name)} (tried: {', '.join(tried)})")
    assert not without_data, "dashboards where no panel query returned data:\n" + "\n".join(without_data)
