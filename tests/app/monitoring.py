"""A real Prometheus and a real Alertmanager holding known data, for the analytics console's tests.

Prometheus scrapes `KnownData`, an exposition served from this process: two hosts, the data host's Redis
and FerretDB, the worker's queue and the app's request metrics, each counter growing at a fixed rate, so
every figure the console derives (rates, ratios, quantiles) has one right answer, written below. The
project's own rules are loaded (the console reads their recorded series), plus one alert the tests turn
on and off to leave a resolved alert in Prometheus' history; the history also holds alerts that fired and
resolved before the tests began (`PAST_ALERTS`, backfilled). Alertmanager starts empty and holds what a
test posts (`post_alert`); Prometheus does not send it anything, so its alerts are exactly those.
Both ask for a credential (basic auth, bcrypt, as the roles set them up): `prometheus_url` and
`alertmanager_url` carry it, as the site's settings do; `auth` is it for the tests' own calls.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.net import free_port

ENV = "test"  # tests/app/conftest.Env runs the app with SCALEMART_ENVIRONMENT=test
MIB, GIB = 1 << 20, 1 << 30
FIXTURE_ALERT = "AnalyticsFixtureAlert"
USER, PASSWORD = "analytics", "known-data-password-0123"


@dataclass(frozen=True)
class Host:
    name: str
    instance: str
    cpu_cores_busy: float  # the rate of its cgroup's CPU seconds
    cpu_limit_cores: float
    memory_working_set: int
    memory_limit: int
    disk_avail: int
    disk_size: int

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_cores_busy / self.cpu_limit_cores

    @property
    def memory_ratio(self) -> float:
        return self.memory_working_set / self.memory_limit

    @property
    def disk_ratio(self) -> float:
        return 1 - self.disk_avail / self.disk_size


HOSTS = (
    Host("app-1", "10.9.0.11:9100", 0.5, 2, 512 * MIB, 2 * GIB, 60 * GIB, 100 * GIB),
    Host("data-1", "10.9.0.12:9100", 0.3, 1, 300 * MIB, 1 * GIB, 10 * GIB, 50 * GIB),
)
REDIS_USED, REDIS_MAX = 100 * MIB, 400 * MIB
DB_ACCEPTED, DB_CLOSED = 30, 18  # open connections: 12
QUEUE_LENGTH, QUEUE_AGE = 7, 3.5
APP_INSTANCE = "10.9.0.11:8000"
# The app's traffic, per second: (route, method) -> (requests by status, the latency bucket all of them fall
# in, the latency each one takes). A route the console leaves out (/metrics) proves it does.
BUCKETS = (0.0025, 0.005, 0.01, 0.025)
TRAFFIC = {
    ("/api/buy", "POST"): ({"200": 9.0, "503": 1.0}, 0.01, 0.008),
    ("/api/products", "GET"): ({"200": 5.0}, 0.005, 0.004),
    ("/metrics", "GET"): ({"200": 20.0}, 0.0025, 0.002),
}
CACHE_HITS_PER_S, CACHE_MISSES_PER_S = 9.0, 1.0


def _lower(bucket: float) -> float:
    return max([b for b in BUCKETS if b < bucket], default=0.0)


def expected_performance(routes: list[tuple[str, str]]) -> dict[str, float]:
    """What the console must show over the given routes' traffic (any window: the rates are constant)."""
    per_s = sum(sum(TRAFFIC[r][0].values()) for r in routes)
    errors = sum(n for r in routes for status, n in TRAFFIC[r][0].items() if status.startswith("5"))
    counts = [(TRAFFIC[r][1], sum(TRAFFIC[r][0].values())) for r in routes]
    merged: dict[float, float] = {}
    for upper, n in counts:
        merged[upper] = merged.get(upper, 0) + n
    spans = [(_lower(u), u, n) for u, n in merged.items()]
    return {
        "requests_per_minute": per_s * 60,
        "error_ratio": errors / per_s,
        "avg_seconds": sum(sum(TRAFFIC[r][0].values()) * TRAFFIC[r][2] for r in routes) / per_s,
        **{f"p{int(q * 100)}_seconds": _quantile_spans(q, spans) for q in (0.5, 0.95, 0.99)},
    }


def _quantile_spans(q: float, spans: list[tuple[float, float, float]]) -> float:
    total = sum(n for *_, n in spans)
    rank, below = q * total, 0.0
    for lower, upper, n in sorted(spans):
        if below + n >= rank:
            return lower + (upper - lower) * (rank - below) / n
        below += n
    raise ValueError("rank beyond the buckets")


Sample = tuple[str, dict[str, str], float]
# Backfilled before Prometheus starts, so every window tested is full: 15 s apart, then 1 s apart (the scrape
# interval) for the last minutes, so a 5-minute rate sees the same spacing from edge to edge.
HISTORY_SECONDS, HISTORY_STEP, RECENT_SECONDS = 70 * 60, 15, 400
# Alerts that fired before the tests began, backfilled as Prometheus' ALERTS series: name -> (env, firing
# episodes as (from, to) seconds before the backfill's end). A backfill writes no staleness markers, so a gap
# between two episodes must be past Prometheus' 5-minute lookback to be seen as one.
TWICE_ALERT, OTHER_ENV_ALERT = "AnalyticsFiredTwiceAlert", "AnalyticsOtherEnvAlert"
PAST_ALERTS = {
    TWICE_ALERT: (ENV, ((60 * 60, 50 * 60), (35 * 60, 25 * 60))),
    OTHER_ENV_ALERT: ("elsewhere", ((15 * 60, 10 * 60),)),  # another environment's, on the same Prometheus
}


class KnownData:
    """The exposition Prometheus scrapes (/host/<name>, /data, /worker, /app, /flag), and its history.

    Every counter is a straight line in wall-clock time, so a rate over any window is its slope. A rate
    divides by its whole window, so the window must hold data: `backfill` writes the last 70 minutes as
    OpenMetrics for `promtool tsdb create-blocks-from`, and the scrapes carry the same lines on.
    """

    def __init__(self) -> None:
        self.origin = time.time() - 2 * HISTORY_SECONDS  # counters well away from zero: no reset is ever seen
        self.flag = 0
        # PAST_ALERTS' episodes as backfilled: name -> [(first sample, last sample)] in unix seconds
        self.past_alerts: dict[str, list[tuple[float, float]]] = {}
        self.port = free_port()
        data = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                samples = data.samples(self.path, time.time())
                if samples is None:
                    self.send_error(404)
                    return
                raw = "".join(f"{name}{_labels(labels)} {value}\n" for name, labels, value in samples).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    def serve(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def samples(self, path: str, at: float) -> list[Sample] | None:
        t = at - self.origin
        if path.startswith("/host/"):
            host = next((h for h in HOSTS if h.name == path.removeprefix("/host/")), None)
            if host is None:
                return None
            fs = {"device": "/dev/vda1", "fstype": "ext4", "mountpoint": "/"}
            tmpfs = {"device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/run"}  # the disk figure leaves it out
            return [
                ("node_uname_info", {"nodename": host.name, "sysname": "Linux"}, 1),
                ("scalemart_host_cpu_usage_seconds_total", {}, host.cpu_cores_busy * t),
                ("scalemart_host_cpu_limit_cores", {}, host.cpu_limit_cores),
                ("scalemart_host_memory_working_set_bytes", {}, host.memory_working_set),
                ("scalemart_host_memory_limit_bytes", {}, host.memory_limit),
                ("node_filesystem_avail_bytes", fs, host.disk_avail),
                ("node_filesystem_size_bytes", fs, host.disk_size),
                ("node_filesystem_avail_bytes", tmpfs, 1),
                ("node_filesystem_size_bytes", tmpfs, 100),
            ]
        if path == "/data":
            return [
                ("redis_memory_used_bytes", {}, REDIS_USED),
                ("redis_memory_max_bytes", {}, REDIS_MAX),
                ("ferretdb_client_accepts_total", {"error": "0"}, DB_ACCEPTED),
                ("ferretdb_client_accepts_total", {"error": "1"}, 4),
                ("ferretdb_client_duration_seconds_count", {}, DB_CLOSED),
            ]
        if path == "/worker":
            return [
                ("scalemart_queue_length", {}, QUEUE_LENGTH),
                ("scalemart_queue_oldest_message_age_seconds", {}, QUEUE_AGE),
            ]
        if path == "/app":
            return self._app(t)
        if path == "/flag":
            return [("analytics_fixture_flag", {}, self.flag)]
        return None

    @staticmethod
    def _app(t: float) -> list[Sample]:
        out: list[Sample] = [
            ("scalemart_cache_hits_total", {}, CACHE_HITS_PER_S * t),
            ("scalemart_cache_misses_total", {}, CACHE_MISSES_PER_S * t),
        ]
        for (route, method), (statuses, bucket, latency) in TRAFFIC.items():
            labels = {"route": route, "method": method}
            for status, per_s in statuses.items():
                out.append(("scalemart_http_requests_total", {**labels, "status": status}, per_s * t))
            n = sum(statuses.values()) * t
            for le in (*BUCKETS, "+Inf"):
                count = n if le == "+Inf" or float(le) >= bucket else 0
                out.append(("scalemart_http_request_duration_seconds_bucket", {**labels, "le": str(le)}, count))
            out += [
                ("scalemart_http_request_duration_seconds_count", labels, n),
                ("scalemart_http_request_duration_seconds_sum", labels, n * latency),
            ]
        return out

    def backfill(self, targets: list[tuple[str, dict[str, str]]], path: Path, until: float) -> None:
        """The history of every target but the flag, as OpenMetrics, each sample with its target's labels; and
        the ALERTS series of PAST_ALERTS, as rule evaluation would have written them."""
        firing: dict[str, list[list[float]]] = {name: [] for name in PAST_ALERTS}
        with path.open("w") as f:
            at = until - HISTORY_SECONDS
            while at < until:
                for metrics_path, labels in targets:
                    for name, own, value in self.samples(metrics_path, at) or []:
                        f.write(f"{name}{_labels({**labels, **own})} {value} {at:.3f}\n")
                for alert, (env, episodes) in PAST_ALERTS.items():
                    for i, (begin, end) in enumerate(episodes):
                        if until - begin <= at <= until - end:
                            labels = {"alertname": alert, "alertstate": "firing", "env": env, "severity": "warning"}
                            f.write(f"ALERTS{_labels(labels)} 1 {at:.3f}\n")
                            seen = firing[alert]
                            if len(seen) <= i:
                                seen.append([at, at])
                            seen[i][1] = at
                at += 1 if until - at <= RECENT_SECONDS else HISTORY_STEP
            f.write("# EOF\n")
        self.past_alerts = {name: [(first, last) for first, last in seen] for name, seen in firing.items()}

    def stop(self) -> None:
        self.server.shutdown()


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{{{inner}}}" if inner else ""


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: run `make bootstrap` (installs the Debian package {package})")
    return path


class Monitoring:
    """The running Prometheus and Alertmanager; `prometheus_url` and `alertmanager_url` go to the app."""

    def __init__(self, work: Path) -> None:
        from alert_rules.build import build

        self.data = KnownData()
        self.procs: list[tuple[subprocess.Popen[Any], Path]] = []
        build(work / "rules")
        (work / "fixture-rules.yml").write_text(
            yaml.safe_dump(
                {
                    "groups": [
                        {
                            "name": "fixture",
                            "rules": [
                                {
                                    "alert": FIXTURE_ALERT,
                                    "expr": "analytics_fixture_flag == 1",
                                    "labels": {"severity": "warning"},
                                    "annotations": {
                                        "summary": "The fixture's alert, on while a test holds its flag up.",
                                        "runbook_url": f"docs/runbooks/{FIXTURE_ALERT}.md",
                                    },
                                }
                            ],
                        }
                    ]
                }
            )
        )
        base = f"127.0.0.1:{self.data.port}"
        targets = [
            *((f"/host/{h.name}", h.instance) for h in HOSTS),
            ("/data", "10.9.0.12:9121"),
            ("/worker", "10.9.0.11:9101"),
            ("/app", APP_INSTANCE),
        ]
        labels = {path: {"env": ENV, "instance": instance} for path, instance in targets}
        conf = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(work / "rules" / "rules" / "*.yml"), str(work / "fixture-rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "known-data",
                    "static_configs": [
                        {"targets": [base], "labels": {**lab, "__metrics_path__": path}}
                        for path, lab in [*labels.items(), ("/flag", {"env": ENV, "instance": "fixture:0"})]
                    ],
                }
            ],
        }
        self.data.backfill(
            [(path, {**lab, "job": "known-data"}) for path, lab in labels.items()], work / "history.om", time.time() - 1
        )
        promtool = _binary("promtool", "prometheus")
        done = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "history.om"), str(work / "tsdb")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.fail(f"promtool could not backfill the known data:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        self.data.serve()
        from passlib.hash import bcrypt

        users = {USER: bcrypt.using(rounds=10).hash(PASSWORD)}
        (work / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": users}))
        self.auth = httpx.BasicAuth(USER, PASSWORD)
        (work / "prometheus.yml").write_text(yaml.safe_dump(conf))
        self.prometheus_port, self.alertmanager_port = free_port(), free_port()
        self._start(
            work,
            "prometheus",
            [
                _binary("prometheus", "prometheus"),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                f"--web.config.file={work / 'web.yml'}",
            ],
            f"{self.prometheus_base}/-/ready",
        )
        (work / "alertmanager.yml").write_text(
            yaml.safe_dump({"route": {"receiver": "nobody", "group_wait": "1h"}, "receivers": [{"name": "nobody"}]})
        )
        self._start(
            work,
            "alertmanager",
            [
                _binary("prometheus-alertmanager", "prometheus-alertmanager"),
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'am'}",
                "--cluster.listen-address=",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                f"--web.config.file={work / 'web.yml'}",
            ],
            f"{self.alertmanager_base}/-/ready",
        )

    @property
    def prometheus_base(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_base(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def prometheus_url(self) -> str:
        """The app's SCALEMART_PROMETHEUS_URL: with the credential."""
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.alertmanager_port}"

    def _start(self, work: Path, name: str, argv: list[str], ready: str) -> None:
        log = work / f"{name}.log"
        proc = subprocess.Popen(argv, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((proc, log))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(ready, auth=self.auth, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{name} did not get ready within 60 s:\n{log.read_text()[-3000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prometheus_base}/api/v1/query", params={"query": expr}, auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]  # type: ignore[no-any-return]

    def wait_for(self, expr: str, timeout: float = 60) -> None:
        """Until `expr` has a series: the scrapes and the recording rules have run."""
        deadline = time.monotonic() + timeout
        while not self.query(expr):
            if time.monotonic() > deadline:
                pytest.fail(f"{expr} has no series after {timeout} s")
            time.sleep(0.5)

    def wait_gone(self, expr: str, timeout: float = 60) -> None:
        """Until `expr` has no series (an alert's: it resolved and its series got a staleness marker)."""
        deadline = time.monotonic() + timeout
        while self.query(expr):
            if time.monotonic() > deadline:
                pytest.fail(f"{expr} still has a series after {timeout} s")
            time.sleep(0.5)

    def post_alert(self, name: str, severity: str, summary: str, **labels: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        alert = {
            "labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": summary, "runbook_url": f"docs/runbooks/{name}.md"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        r = httpx.post(f"{self.alertmanager_base}/api/v2/alerts", json=[alert], auth=self.auth, timeout=10)
        r.raise_for_status()
        return alert

    def resolve_alert(self, alert: dict[str, Any]) -> None:
        """Post it again ending now: Alertmanager no longer lists it as active."""
        ended = {**alert, "endsAt": datetime.now(UTC).isoformat()}
        r = httpx.post(f"{self.alertmanager_base}/api/v2/alerts", json=[ended], auth=self.auth, timeout=10)
        r.raise_for_status()

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.data.stop()


@pytest.fixture(scope="session")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    m = Monitoring(tmp_path_factory.mktemp("monitoring"))
    try:
        # scraped live for a few seconds (a rate's last sample is then under a second old), records evaluated
        m.wait_for('min(count_over_time(up{job="known-data"}[1m])) >= 3')
        m.wait_for("instance:scalemart_host_cpu_usage:ratio")
        yield m
    finally:
        m.stop()
