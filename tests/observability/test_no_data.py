"""No "No data" panel: every dashboard and alert expression parses on a real Prometheus that scrapes
the real app, worker and exporters, and selects only metric names those targets expose; and every
panel query, run on that Prometheus as its dashboard sends it, returns data. No Grafana server runs
here (the project does not build one): the panels are checked on the Prometheus they would query.

Runs on loopback: redis-server, FerretDB (its own metrics on --debug-addr, scraped as job `ferretdb`
at /debug/metrics, as the prometheus role does), `scalemart serve` (2 uvicorn workers) and
`scalemart worker`, nginx in front of the app (logging in the loadbalancer role's format), the Debian
node/redis/nginx exporters, mtail with the exporters role's program over nginx's log, the blackbox exporter
probing the shop through nginx as the prometheus role's `blackbox` job does, the host-limits textfile of
the exporters role, Percona's mongodb_exporter (.tools/bin, built by `make bootstrap`), Alertmanager and
Prometheus (1 s scrapes, size-based retention, the generated rules and SLO records loaded). Traffic
exercises every metric family first. Names that cannot be produced here would be listed in
alert_rules.coverage.ENVIRONMENT_ONLY with the reason; none are.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alert_rules import coverage
from alert_rules.alertmanager import render
from alert_rules.build import build
from alert_rules.signals import OPEN_CONNECTIONS
from dashboards import build as build_dashboards
from dashboards import perses, render_all
from tests import perses as perses_client
from tests.observability.conftest import (
    PYTHON,
    ROOT,
    TOOLS,
    Alertmanager,
    Proc,
    Recorder,
    binary,
    free_port,
    wait_http,
    wait_port,
)

# The buyers' tokens are minted by the app's own module, as the shop's login service does: app/ must be importable
# when this area runs alone too (tests/app/conftest.py puts it on sys.path only when that area is collected).
APP_SRC = ROOT / "app"
if str(APP_SRC) not in sys.path:
    sys.path.insert(0, str(APP_SRC))

ADMIN_TOKEN = "obs-" + secrets.token_hex(16)
BUYER_KEY = "obs-buyer-" + secrets.token_hex(24)


def as_buyer(user: str) -> dict[str, str]:
    from scalemart import tokens

    return {"Authorization": f"Bearer {tokens.issue(BUYER_KEY, user, 3600).token}"}


PERSES_PASSWORD = "obs-" + secrets.token_hex(16)


@dataclass
class Stack:
    prometheus: str
    perses: str
    workdir: Path
    procs: list[Proc]
    mongo_port: int
    started: float


EXPORTERS_FILES = ROOT / "roles" / "exporters" / "files"
LB_LOG_FORMAT = re.compile(r"^\s*log_format upstream .*?;$", re.S | re.M)


def _nginx_conf(workdir: Path, listen: int, status: int, app: int) -> Path:
    """nginx in front of the app, logging each answer in the loadbalancer role's own format (mtail reads it)."""
    role_conf = (ROOT / "roles" / "loadbalancer" / "templates" / "nginx.conf.j2").read_text()
    log_format = LB_LOG_FORMAT.search(role_conf)
    assert log_format, "roles/loadbalancer/templates/nginx.conf.j2 has no `log_format upstream`"
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
  {log_format.group(0).strip()}
  access_log {workdir}/access.log upstream;
  client_body_temp_path {workdir}/nginx-body;
  proxy_temp_path {workdir}/nginx-proxy;
  fastcgi_temp_path {workdir}/nginx-fcgi;
  uwsgi_temp_path {workdir}/nginx-uwsgi;
  scgi_temp_path {workdir}/nginx-scgi;
  upstream app {{ server 127.0.0.1:{app}; }}
  server {{ listen 127.0.0.1:{listen}; location / {{ proxy_pass http://app; }} }}
  server {{ listen 127.0.0.1:{status}; location = /stub_status {{ stub_status; }} }}
}}
""")
    return conf


# Percona mongodb_exporter against FerretDB. Not --collect-all: it turns the `top` collector on from the
# second scrape, FerretDB has no `top` command and every scrape then panics (up 0, mongodb_up gone).
MONGODB_EXPORTER_FLAGS = [
    "--compatible-mode",
    "--mongodb.direct-connect",
    "--collector.diagnosticdata",
    "--collector.dbstats",
    "--collector.fcv",
]

# Targets whose metrics are not at /metrics (job name: path)
METRICS_PATHS = {"ferretdb": "/debug/metrics"}
# The probes come from a client address of their own (nginx here passes X-Forwarded-For on, and the app
# trusts it from loopback): _traffic's burst leaves 127.0.0.1 rate-limited, as no prober is on dev.
BLACKBOX_CONFIG = {
    "modules": {
        "http_2xx": {
            "prober": "http",
            "timeout": "5s",
            "http": {"method": "GET", "headers": {"X-Forwarded-For": "192.0.2.30"}},
        },
        "tcp_connect": {"prober": "tcp", "timeout": "5s"},
    }
}


def _blackbox_job(exporter: int, shop: int, tcp: int) -> dict[str, Any]:
    """The prometheus role's `blackbox` job: each target group names its probe and module; the exporter
    probes `__param_target`, which becomes the instance."""
    groups = [
        (f"http://127.0.0.1:{shop}/health/ready", "shop-ready", "http_2xx"),
        (f"http://127.0.0.1:{shop}/api/products", "shop-product", "http_2xx"),
        (f"127.0.0.1:{tcp}", "tcp", "tcp_connect"),
    ]
    # every 5 s: the two http probes then stay within the app's per-client budget here (40 per 60 s); at the
    # global 1 s they would spend it in 20 s and /api/products would answer the probe 429
    return {
        "job_name": "blackbox",
        "metrics_path": "/probe",
        "scrape_interval": "5s",
        "scrape_timeout": "5s",
        "static_configs": [
            {"targets": [target], "labels": {"env": "test", "probe": probe, "__param_module": module}}
            for target, probe, module in groups
        ],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter}"},
        ],
    }


def _prometheus_conf(
    workdir: Path, port: int, targets: dict[str, int], am_port: int, rules: Path, extra_jobs: list[dict[str, Any]]
) -> Path:
    conf: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        # `env` on every target, as the prometheus role sets it: dashboards and rules select on it
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": METRICS_PATHS.get(job, "/metrics"),
                "static_configs": [{"targets": [f"127.0.0.1:{p}"], "labels": {"env": "test"}}],
            }
            for job, p in {"prometheus": port, **targets}.items()
        ]
        + extra_jobs,
    }
    for job in conf["scrape_configs"]:
        if job["job_name"] == "mongodb":
            # Percona's exporter gives itself (scrape timeout in whole seconds - 1 s) per scrape: with the
            # 1 s timeout of the other jobs it has 0 s and always reports mongodb_up 0
            job.update(scrape_interval="3s", scrape_timeout="3s")
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf))
    return path


def _traffic(shop: str, direct: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=shop, timeout=30) as c:
        for pid, stock in (("obs-1", 3), ("obs-2", 50)):
            r = c.post(
                "/api/admin/products",
                headers=admin,
                json={"id": pid, "name": f"Product {pid}", "price": 12.5, "stock": stock, "open": True},
            )
            assert r.status_code == 201, r.text
        c.get("/api/products").raise_for_status()
        for _ in range(3):
            c.get("/api/products/obs-1").raise_for_status()
            c.get("/api/products/obs-2").raise_for_status()
        for user, qty in (("u1", 1), ("u2", 2), ("u3", 1)):  # the last one finds obs-1 sold out
            c.post(
                "/api/buy",
                json={"user_id": user, "product_id": "obs-1", "quantity": qty, "idempotency_key": uuid.uuid4().hex},
                headers=as_buyer(user),
            )
        key = uuid.uuid4().hex
        for _ in range(2):  # the replay is a duplicate
            c.post(
                "/api/buy",
                json={"user_id": "u4", "product_id": "obs-2", "quantity": 1, "idempotency_key": key},
                headers=as_buyer("u4"),
            )
        c.post(
            "/api/buy",
            json={"user_id": "u5", "product_id": "obs-2", "quantity": 40, "idempotency_key": uuid.uuid4().hex},
            headers=as_buyer("u5"),
        )  # over the per-user limit
        c.get("/api/users/me/orders", headers=as_buyer("u1"))
        assert c.get("/api/admin/stats", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/api/admin/stats", headers=admin).status_code == 200
        c.get("/api/products/does-not-exist")
        # the attack counters: a refused buyer token, an injection shape (an oversized body below)
        assert c.get("/api/users/me/orders", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
        assert c.get("/api/products/$where").status_code == 422
    # the limiter allows few requests per window in this test: the burst trips it
    with httpx.Client(base_url=direct, timeout=30) as c:
        # to the app itself: nginx, run as root here, buffers a body that large in a folder its workers cannot write
        assert c.post("/api/buy", json={"pad": "x" * 20000}, headers=as_buyer("u1")).status_code == 413
        statuses = {c.get("/api/products").status_code for _ in range(50)}
    assert 429 in statuses, f"the rate limiter never answered 429: {statuses}"


def _second_round(shop: str) -> None:
    # another client address (uvicorn trusts X-Forwarded-For from loopback): the first is rate-limited now
    with httpx.Client(base_url=shop, timeout=30, headers={"X-Forwarded-For": "192.0.2.20"}) as c:
        for _ in range(3):
            c.get("/api/products/obs-2").raise_for_status()
        for user in ("u6", "u7"):
            r = c.post(
                "/api/buy",
                json={"user_id": user, "product_id": "obs-2", "quantity": 1, "idempotency_key": uuid.uuid4().hex},
                headers=as_buyer(user),
            )
            assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("nodata")
    procs: list[Proc] = []
    try:
        yield _start(work, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def _start(work: Path, procs: list[Proc]) -> Stack:
    ferretdb = TOOLS / "ferretdb"
    if not ferretdb.exists():
        pytest.fail(f"{ferretdb} is missing: run `make bootstrap`")
    if not (ROOT / "app" / "scalemart" / "cli.py").exists():
        pytest.fail("app/scalemart is missing: the ScaleMart API (app issue) must be in the tree")
    mongodb_exporter = TOOLS / "mongodb_exporter"
    if not mongodb_exporter.exists():
        pytest.fail(f"{mongodb_exporter} is missing: run `make bootstrap` (builds Percona's mongodb_exporter)")
    ports = {
        k: free_port()
        for k in (
            "redis",
            "mongo",
            "ferretdb_debug",
            "app",
            "worker",
            "node",
            "redis_exp",
            "mongo_exp",
            "nginx",
            "stub",
            "nginx_exp",
            "mtail",
            "blackbox",
            "prom",
        )
    }

    def start(name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, argv, work, env)
        procs.append(p)
        wait_port(port, p.proc, p.log)
        return p

    (work / "redis").mkdir()
    start(
        "redis",
        [
            binary("redis-server", "redis-server"),
            "--port",
            str(ports["redis"]),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(work / "redis"),
            "--save",
            "",
            "--daemonize",
            "no",
            "--maxmemory",
            "64mb",
            "--maxmemory-policy",
            "noeviction",
        ],
        ports["redis"],
    )
    (work / "ferretdb").mkdir()
    start(
        "ferretdb",
        [
            str(ferretdb),
            "--handler=sqlite",
            f"--sqlite-url=file:{work / 'ferretdb'}/",
            f"--state-dir={work / 'ferretdb'}",
            f"--listen-addr=127.0.0.1:{ports['mongo']}",
            f"--debug-addr=127.0.0.1:{ports['ferretdb_debug']}",
            "--telemetry=disable",
            "--log-level=WARN",
        ],
        ports["mongo"],
    )
    wait_port(ports["ferretdb_debug"])
    app_env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALEMART_", "PROMETHEUS_MULTIPROC"))}
    app_env.update(
        {
            "PYTHONPATH": str(ROOT / "app"),
            "SCALEMART_ENVIRONMENT": "test",
            "SCALEMART_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "SCALEMART_MONGO_URL": f"mongodb://127.0.0.1:{ports['mongo']}/",
            "SCALEMART_MONGO_DB": "obs",
            "SCALEMART_ADMIN_TOKEN": ADMIN_TOKEN,
            "SCALEMART_BUYER_TOKEN_KEY": BUYER_KEY,
            "SCALEMART_LOG_LEVEL": "warning",
            "SCALEMART_RATE_LIMIT_REQUESTS": "40",
            "SCALEMART_RATE_LIMIT_WINDOW_SECONDS": "60",
            "SCALEMART_WORKER_NAME": "obs-worker",
            "SCALEMART_WORKER_METRICS_HOST": "127.0.0.1",
        }
    )
    app = start(
        "app",
        [str(PYTHON), "-m", "scalemart", "serve", "--host", "127.0.0.1", "--port", str(ports["app"]), "--workers", "2"],
        ports["app"],
        app_env,
    )
    wait_http(f"http://127.0.0.1:{ports['app']}/health/live", proc=app.proc, log=app.log)
    start(
        "worker",
        [str(PYTHON), "-m", "scalemart", "worker", "--metrics-port", str(ports["worker"])],
        ports["worker"],
        app_env,
    )
    conf = _nginx_conf(work, ports["nginx"], ports["stub"], ports["app"])
    start(
        "nginx", [binary("nginx", "nginx-light"), "-p", str(work), "-c", str(conf), "-g", "daemon off;"], ports["nginx"]
    )
    mtail_progs = work / "mtail"
    mtail_progs.mkdir()
    shutil.copy(EXPORTERS_FILES / "scalemart_lb.mtail", mtail_progs)
    start(
        "mtail",
        [
            binary("mtail", "mtail"),
            "--progs",
            str(mtail_progs),
            "--logs",
            str(work / "access.log"),
            "--address",
            "127.0.0.1",
            "--port",
            str(ports["mtail"]),
            "--emit_prog_label=false",
            "--logtostderr",
        ],
        ports["mtail"],
    )
    (work / "blackbox.yml").write_text(yaml.safe_dump(BLACKBOX_CONFIG))
    start(
        "blackbox-exporter",
        [
            binary("prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
            f"--config.file={work / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{ports['blackbox']}",
        ],
        ports["blackbox"],
    )
    textfiles = work / "textfile"
    textfiles.mkdir()
    _backup_textfile(textfiles)
    # The exporters role's script, as its timer runs it on every host (here: this machine's own limits).
    limits = subprocess.run(
        [
            sys.executable,
            str(EXPORTERS_FILES / "scalemart-host-limits"),
            "--output",
            str(textfiles / "scalemart_host.prom"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert limits.returncode == 0, limits.stdout + limits.stderr
    start(
        "node-exporter",
        [
            binary("prometheus-node-exporter", "prometheus-node-exporter"),
            f"--collector.textfile.directory={textfiles}",
            f"--web.listen-address=127.0.0.1:{ports['node']}",
        ],
        ports["node"],
    )
    start(
        "redis-exporter",
        [
            binary("prometheus-redis-exporter", "prometheus-redis-exporter"),
            "-redis.addr",
            f"redis://127.0.0.1:{ports['redis']}",
            "-web.listen-address",
            f"127.0.0.1:{ports['redis_exp']}",
        ],
        ports["redis_exp"],
    )
    start(
        "mongodb-exporter",
        [
            str(mongodb_exporter),
            f"--mongodb.uri=mongodb://127.0.0.1:{ports['mongo']}/",
            *MONGODB_EXPORTER_FLAGS,
            f"--web.listen-address=127.0.0.1:{ports['mongo_exp']}",
        ],
        ports["mongo_exp"],
    )
    start(
        "nginx-exporter",
        [
            binary("prometheus-nginx-exporter", "prometheus-nginx-exporter"),
            "-nginx.scrape-uri",
            f"http://127.0.0.1:{ports['stub']}/stub_status",
            "-web.listen-address",
            f"127.0.0.1:{ports['nginx_exp']}",
        ],
        ports["nginx_exp"],
    )
    hooks = Recorder(200, {})
    am = Alertmanager(
        render(
            {
                "smtp": {"smarthost": f"127.0.0.1:{free_port()}", "from": "alerts@shop.example", "require_tls": False},
                "email": {s: ["ops@shop.example"] for s in ("critical", "warning", "info")},
                "sms_notifier_url": f"{hooks.url}/sms",
                "heartbeat_url": f"{hooks.url}/heartbeat",
            }
        ),
        work,
        procs,
    )
    build(work / "alerting")
    targets = {
        "alertmanager": am.port,
        "scalemart-app": ports["app"],
        "scalemart-worker": ports["worker"],
        "node": ports["node"],
        "redis": ports["redis_exp"],
        "mongodb": ports["mongo_exp"],
        "ferretdb": ports["ferretdb_debug"],
        "nginx": ports["nginx_exp"],
        "lb-log": ports["mtail"],
    }
    probes = _blackbox_job(ports["blackbox"], ports["nginx"], ports["redis"])
    prom_conf = _prometheus_conf(work, ports["prom"], targets, am.port, work / "alerting" / "rules", [probes])
    (work / "tsdb").mkdir()
    prom = start(
        "prometheus",
        [
            binary("prometheus", "prometheus"),
            f"--config.file={prom_conf}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            "--storage.tsdb.retention.size=1GB",
            f"--web.listen-address=127.0.0.1:{ports['prom']}",
        ],
        ports["prom"],
    )
    url = f"http://127.0.0.1:{ports['prom']}"
    wait_http(f"{url}/-/ready", proc=prom.proc, log=prom.log)
    started = time.time()

    _traffic(f"http://127.0.0.1:{ports['nginx']}", f"http://127.0.0.1:{ports['app']}")
    _wait_scraped(url, len(targets) + 1 + len(probes["static_configs"]))
    # Series born during the first round start at their final value, so rate() over them is 0 and
    # ratios are 0/0. A second round after they are scraped gives every rate something to show.
    _second_round(f"http://127.0.0.1:{ports['nginx']}")
    perses_url = _start_perses(work, procs, url)
    time.sleep(4)
    return Stack(url, perses_url, work, procs, ports["mongo"], started)


def _start_perses(work: Path, procs: list[Proc], prometheus: str) -> str:
    """The Perses server on loopback, as the perses role runs it: login required, the built project,
    datasource (on this Prometheus) and dashboards provisioned one resource per file."""
    home = perses.PERSES_HOME
    if not (home / "bin" / "perses").exists():
        pytest.fail(f"{home}/bin/perses is missing: run `make bootstrap` (it builds Perses and its UI)")
    provisioning = work / "perses-provisioning"
    provisioning.mkdir()
    for path in build_dashboards(work / "dashboards"):
        if path.parent.name == "perses":
            resource = json.loads(path.read_text())
            if resource["kind"] == "GlobalDatasource":
                resource["spec"]["plugin"]["spec"]["proxy"] = {"kind": "HTTPProxy", "spec": {"url": prometheus}}
            (provisioning / path.name).write_text(json.dumps(resource))
    admin = [
        {"kind": "User", "metadata": {"name": "admin"}, "spec": {"nativeProvider": {"password": PERSES_PASSWORD}}},
        {
            "kind": "GlobalRole",
            "metadata": {"name": "admin"},
            "spec": {"permissions": [{"actions": ["*"], "scopes": ["*"]}]},
        },
        {
            "kind": "GlobalRoleBinding",
            "metadata": {"name": "admin"},
            "spec": {"role": "admin", "subjects": [{"kind": "User", "name": "admin"}]},
        },
    ]
    for resource in admin:
        (provisioning / perses.file_name(resource)).write_text(json.dumps(resource))
    schemas = home / "cue" / "schemas"
    config = {
        "database": {"file": {"folder": str(work / "perses-db"), "extension": "json"}},
        "schemas": {f"{kind}_path": str(schemas / kind) for kind in ("panels", "queries", "datasources", "variables")},
        "security": {
            "enable_auth": True,
            "encryption_key": secrets.token_hex(16),
            "authentication": {"disable_sign_up": True, "providers": {"enable_native": True}},
        },
        "provisioning": {"folders": [str(provisioning)]},
    }
    (work / "perses.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = Proc(
        "perses",
        [str(home / "bin" / "perses"), f"--config={work / 'perses.yaml'}", f"--web.listen-address=127.0.0.1:{port}"],
        work,
    )
    procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/api/v1/health", proc=proc.proc, log=proc.log)
    return base


def _backup_textfile(directory: Path) -> None:
    """The textfile the backup job leaves for the node exporter, written by the backups code itself."""
    from backups import metrics

    now = time.time()
    state = {
        "last_success": {
            "finished": now - 3600,
            "duration_seconds": 12.0,
            "archive_bytes": 2048,
            "sizes": {"mongodb": 1024, "redis": 512, "config": 256},
            "orders": 3,
        },
        "last_run": {"finished": now - 3600, "ok": True},
    }
    metrics.write_textfile(directory / "scalemart_backup.prom", metrics.render(state, 1, 2048))


def _wait_scraped(url: str, n_targets: int, timeout: float = 90) -> None:
    """Every target up, then a few more scrapes so rate() over fresh counters has two samples."""
    deadline = time.monotonic() + timeout
    up: list = []
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=10).json()
        up = body["data"]["result"]
        if len(up) == n_targets and all(r["value"][1] == "1" for r in up):
            time.sleep(4)
            return
        time.sleep(0.5)
    raise TimeoutError(
        f"Prometheus targets not all up after {timeout} s: {[(r['metric']['job'], r['value'][1]) for r in up]}"
    )


def test_every_panel_and_rule_expression_parses_and_uses_exposed_metrics(stack: Stack) -> None:
    report = coverage.check(stack.prometheus, environment_only=coverage.ENVIRONMENT_ONLY)
    print(report.text())
    assert report.checked > 90
    assert report.ok, "dashboard panels or rules that would never show data:\n" + report.text()


def test_nothing_is_deferred_to_the_environment_test(stack: Stack) -> None:
    # MongoDB included: the Percona exporter and FerretDB's own metrics both run here
    report = coverage.check(stack.prometheus, environment_only=coverage.ENVIRONMENT_ONLY)
    assert not report.environment_only, report.text()


def _query(url: str, expr: str) -> list[dict]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_mongodb_up_comes_from_the_percona_exporter_and_ferretdb_is_scraped(stack: Stack) -> None:
    up = _query(stack.prometheus, "mongodb_up")
    assert [(r["metric"]["job"], r["value"][1]) for r in up] == [("mongodb", "1")], up
    # every scrape of the exporter and of FerretDB since the start succeeded (a panicking collector
    # answers some scrapes and breaks the others)
    since = f"{int(time.time() - stack.started) + 1}s"
    for job in ("mongodb", "ferretdb"):
        worst = _query(stack.prometheus, f'min_over_time(up{{job="{job}"}}[{since}])')
        assert [r["value"][1] for r in worst] == ["1"], f"{job}: a scrape failed: {worst}"


def _open_connections_floor(url: str, seconds: float = 4) -> float:
    """The lowest open-connections value over a few FerretDB scrapes.

    The exporter opens two short-lived connections on each of its scrapes, so single readings jump
    by +2 now and then; the persistent connections (app pools, worker, test clients) are the floor."""
    readings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = _query(url, OPEN_CONNECTIONS.expr())
        assert len(result) == 1, f"expected one FerretDB instance: {result}"
        readings.append(float(result[0]["value"][1]))
        time.sleep(0.5)
    return min(readings)


def _wait_floor(url: str, expected: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    floor = _open_connections_floor(url)
    while floor != expected and time.monotonic() < deadline:
        floor = _open_connections_floor(url)
    return floor


def test_open_connections_follow_real_client_connections(stack: Stack) -> None:
    """The MongoDBTooManyConnections expression counts what is really open on FerretDB."""
    before = _open_connections_floor(stack.prometheus)
    assert before >= 1, "the app, worker and exporter hold connections: 0 means the expression is wrong"
    extra = 20
    clients = [socket.create_connection(("127.0.0.1", stack.mongo_port), timeout=5) for _ in range(extra)]
    try:
        during = _wait_floor(stack.prometheus, before + extra)
    finally:
        for c in clients:
            c.close()
    after = _wait_floor(stack.prometheus, before)
    assert (during, after) == (before + extra, before), (
        f"open connections before/with {extra} more clients/after closing them: {before}/{during}/{after}"
    )


def test_environment_only_names_are_really_absent_here_and_used(stack: Stack) -> None:
    exposed = coverage.check(stack.prometheus, selected=[]).exposed
    used = set().union(*(coverage.metric_names(i.expr) for i in coverage.items()))
    for name, reason in coverage.ENVIRONMENT_ONLY.items():
        assert name not in exposed, f"{name} is exposed on this machine now: drop it from ENVIRONMENT_ONLY"
        assert name in used, f"{name} ({reason}) is no longer used by any panel or rule: drop it"


def test_panels_show_data_after_traffic(stack: Stack) -> None:
    report = coverage.check(stack.prometheus, environment_only=coverage.ENVIRONMENT_ONLY)
    unexpected = [w for w in report.empty_panels if not any(f"panel '{p}'" in w for p in coverage.EMPTY_WHEN_HEALTHY)]
    assert not unexpected, "panels without data although every metric they use is exposed:\n" + "\n".join(unexpected)


def test_the_check_names_a_misspelled_metric_and_a_broken_query(stack: Stack) -> None:
    bad = [
        coverage.Item("dashboard 'T' panel 'Typo' [A]", "sum(rate(scalemart_http_request_total[1m]))", True),
        coverage.Item("rule 'Broken' (warning)", "sum(rate(scalemart_http_requests_total[1m]) >", False),
    ]
    report = coverage.check(stack.prometheus, selected=bad)
    assert not report.ok
    assert report.missing == {"dashboard 'T' panel 'Typo' [A]": {"scalemart_http_request_total"}}
    assert "rule 'Broken' (warning)" in report.parse_errors
    assert "FAIL dashboard 'T' panel 'Typo' [A]: no target exposes scalemart_http_request_total" in report.text()


def test_every_panel_query_returns_data_on_prometheus(stack: Stack) -> None:
    """Every panel query as its dashboard sends it, run on the Prometheus itself: Grafana's variables
    substituted as coverage.GRAFANA_VARS gives them, a range query over the last 10 minutes (2 s steps,
    what a 300-point panel asks for) or an instant one for instant targets. None is empty or NaN only,
    except the panels of coverage.EMPTY_WHEN_HEALTHY."""
    deferred = set(coverage.ENVIRONMENT_ONLY)
    empty: list[str] = []
    rejected: list[str] = []
    checked: dict[str, int] = {}
    end = time.time()
    with httpx.Client(base_url=stack.prometheus, timeout=60) as c:
        for data in render_all().values():
            checked[data["title"]] = 0
            for p in data["panels"]:
                for tgt in p.get("targets") or []:
                    if not tgt.get("expr"):
                        continue
                    expr = coverage.substitute(tgt["expr"])
                    if coverage.metric_names(expr) & deferred:
                        continue
                    where = f"{data['title']} / {p['title']} [{tgt['refId']}]"
                    if tgt.get("instant"):
                        r = c.get("/api/v1/query", params={"query": expr, "time": end})
                    else:
                        r = c.get(
                            "/api/v1/query_range", params={"query": expr, "start": end - 600, "end": end, "step": 2}
                        )
                    body = r.json()
                    if r.status_code != 200 or body.get("status") != "success":
                        rejected.append(f"{where}: {r.status_code} {body.get('errorType')}: {body.get('error')}")
                        continue
                    checked[data["title"]] += 1
                    if not coverage.has_data(body["data"]) and p["title"] not in coverage.EMPTY_WHEN_HEALTHY:
                        empty.append(where)
    assert not rejected, "panel queries Prometheus rejects:\n" + "\n".join(rejected)
    assert all(checked.values()), f"dashboards without a single panel query checked: {checked}"
    assert not empty, "panels that would show No data (empty or NaN only on Prometheus):\n" + "\n".join(empty)


def test_every_perses_panel_query_returns_data_through_the_datasource_proxy(stack: Stack) -> None:
    """The converted dashboards as Perses serves them: every panel query, sent through Perses' datasource
    proxy to this Prometheus (range queries, instant ones for tables), is accepted and returns data,
    except the panels of coverage.EMPTY_WHEN_HEALTHY. A failure names the dashboard and the panel."""
    with perses_client.login(stack.perses, "admin", PERSES_PASSWORD) as client:
        served = perses_client.dashboards(client)
        assert sorted(served) == sorted(render_all()), f"Perses serves {sorted(served)}"
        empty, checked = [], 0
        for dashboard in served.values():
            for query in perses_client.panel_queries(dashboard):
                body = perses_client.run(client, query)
                checked += 1
                if not coverage.has_data(body["data"]) and query.panel not in coverage.EMPTY_WHEN_HEALTHY:
                    empty.append(query.where)
    assert checked > 50, f"only {checked} panel queries found in the Perses dashboards"
    assert not empty, "Perses panels that would show No data:\n" + "\n".join(empty)


def test_perses_refuses_anonymous_requests_and_a_wrong_password(stack: Stack) -> None:
    r = httpx.get(f"{stack.perses}/api/v1/projects/{perses.PROJECT}/dashboards", timeout=10)
    assert r.status_code == 401, r.text[:200]
    r = httpx.post(f"{stack.perses}{perses_client.LOGIN}", json={"login": "admin", "password": "admin"}, timeout=10)
    assert r.status_code in (400, 401), r.text[:200]


def test_the_slo_inputs_come_from_the_balancer_log_and_the_probes(stack: Stack) -> None:
    """mtail counts nginx's answers by code (the 404 of a missing product and the 429s included), every probe
    succeeds, and the availability SLI computes from them."""
    answers = _query(stack.prometheus, "scalemart_lb_responses_total")
    codes = {r["metric"]["code"]: float(r["value"][1]) for r in answers}
    assert codes.get("200", 0) > 0 and codes.get("404", 0) >= 1, codes
    probes = {(r["metric"]["probe"], r["value"][1]) for r in _query(stack.prometheus, "probe_success")}
    assert probes == {("shop-ready", "1"), ("shop-product", "1"), ("tcp", "1")}, probes
    sli = _query(stack.prometheus, 'slo:sli_error:ratio_rate5m{slo="availability"}')
    assert [r["value"][1] for r in sli] == ["0"], f"no 5xx and no failed probe, yet the error ratio is {sli}"


def test_mtail_counts_each_client_addresses_401_403_404_only(stack: Stack) -> None:
    """The 401s (the wrong admin token, the refused buyer token) and the 404 (a missing product) of the traffic, all
    from 127.0.0.1 through nginx, by client and code; the 200s and the 422 make no series."""
    found = {
        (r["metric"]["client"], r["metric"]["code"]): float(r["value"][1])
        for r in _query(stack.prometheus, "scalemart_lb_client_errors_total")
    }
    assert {client for client, _ in found} == {"127.0.0.1"}, found
    assert {code for _, code in found} <= {"401", "403", "404"}, found
    assert found.get(("127.0.0.1", "401"), 0) >= 2 and found.get(("127.0.0.1", "404"), 0) >= 1, found


def test_the_host_limits_textfile_is_scraped(stack: Stack) -> None:
    limit = _query(stack.prometheus, "scalemart_host_memory_limit_bytes")
    used = _query(stack.prometheus, "scalemart_host_memory_working_set_bytes")
    assert len(limit) == len(used) == 1 and 0 < float(used[0]["value"][1]) < float(limit[0]["value"][1]), (limit, used)
