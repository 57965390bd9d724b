"""Prometheus alert rules for ScaleMart, generated from the thresholds file.

Each alert is declared once, with the signal it watches (alert_rules/signals.py: the PromQL the
dashboards query too) and how to produce test input for it, so the rule files and their promtool unit
tests (alert_rules/promtests.py) always agree with thresholds.yml and with the panels.
Tiered keys (warning/critical) become one alert name with one rule per severity: Alertmanager's
inhibition then keeps only the most severe one notifying.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alert_rules import signals as s
from alert_rules.signals import Signal
from alert_rules.signals import number as _num
from alert_rules.thresholds import Threshold, Thresholds

DEFAULT_RUNBOOK_BASE = "docs/runbooks"

# Labels the test input series carry; the prometheus role attaches `env` to every scrape target.
ENV = {"env": "test"}
APP = {**ENV, "job": "scalemart-app", "instance": "app-1:8000"}
WORKER = {**ENV, "job": "scalemart-worker", "instance": "worker-1:9101"}
NODE = {**ENV, "job": "node", "instance": "app-1:9100"}
REDIS = {**ENV, "job": "redis", "instance": "data-1:9121"}
MONGO = {**ENV, "job": "mongodb", "instance": "data-1:9216"}
FERRETDB = {**ENV, "job": "ferretdb", "instance": "data-1:8088"}
PROM = {**ENV, "job": "prometheus", "instance": "monitoring-1:9090"}
AM = {**ENV, "job": "alertmanager", "instance": "monitoring-1:9093"}
BACKUP = {**ENV, "job": "node", "instance": "data-1:9100", "kind": "mongodb"}
DATA_NODE = {**ENV, "job": "node", "instance": "data-1:9100"}
VOLUME = {**DATA_NODE, "device": "/dev/vda1", "fstype": "ext4", "mountpoint": "/var/lib/ferretdb"}
LB = {**ENV, "job": "lb-log", "instance": "lb-1:3903"}
# client addresses of the load balancer's log (documentation ranges, RFC 5737)
SCANNER, SHOPPER = "203.0.113.7", "198.51.100.20"
PROBE = {**ENV, "job": "blackbox", "probe": "shop-ready", "instance": "http://lb-1:80/health/ready"}
DISK_SIZE = 100e9

# A series description for promtool: (metric{labels}, values).
Series = tuple[str, str]


def _sel(metric: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def counter(metric: str, labels: dict[str, str], per_minute: float, minutes: int) -> Series:
    return _sel(metric, labels), f"0+{_num(per_minute)}x{minutes}"


def gauge(metric: str, labels: dict[str, str], value: float, minutes: int) -> Series:
    return _sel(metric, labels), f"{_num(value)}x{minutes}"


def timestamp_aged(metric: str, labels: dict[str, str], age_seconds: float, minutes: int) -> Series:
    # a timestamp that keeps moving with the clock but always lags it by age_seconds
    return _sel(metric, labels), f"{_num(-age_seconds)}+60x{minutes}"


def histogram(metric: str, labels: dict[str, str], quantile: float, value: float, minutes: int) -> list[Series]:
    # every observation in one bucket (0, b]: histogram_quantile interpolates to quantile * b
    upper = value / quantile
    return [
        (_sel(f"{metric}_bucket", {**labels, "le": repr(upper)}), f"0+60x{minutes}"),
        (_sel(f"{metric}_bucket", {**labels, "le": "+Inf"}), f"0+60x{minutes}"),
    ]


# ----- Go template helpers replicated, so tests can assert the rendered annotation text -----


def _go_g4(v: float) -> str:
    text = f"{v:.4g}"
    if "e" in text:
        mant, exp = text.split("e")
        sign = exp[0]
        digits = exp[1:].lstrip("0").rjust(2, "0")
        text = f"{mant}e{sign}{digits}"
    return text


def humanize_percentage(v: float) -> str:
    return f"{_go_g4(v * 100)}%"


def humanize_duration(v: float) -> str:
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_go_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_go_g4(v)}{prefix}s"


def printf_f(decimals: int) -> Callable[[float], str]:
    def fmt(v: float) -> str:
        return f"{v:.{decimals}f}"

    return fmt


# (Go template pipe, Python replica, how a threshold is written in prose)
FORMATS: dict[str, tuple[str, Callable[[float], str], Callable[[float], str]]] = {
    "percent": ("humanizePercentage", humanize_percentage, lambda t: f"{t * 100:g}%"),
    "duration": ("humanizeDuration", humanize_duration, lambda t: f"{t:g}s"),
    "count": ('printf "%.0f"', printf_f(0), lambda t: f"{t:g}"),
    "rate": ('printf "%.1f"', printf_f(1), lambda t: f"{t:g}"),
    "hours": ('printf "%.1f"', printf_f(1), lambda t: f"{t:g}"),
}


@dataclass
class Alert:
    """One alert name watching one signal. A tiered alert compares the signal with each tier of the
    signal's thresholds key; a state alert compares it with a constant (`when`), its `key` giving the
    severity and `for`."""

    name: str
    group: str
    signal: Signal
    summary: str
    # str.format fields: {value} (the rendered $value), {threshold}, {for_}; Go template {{ }} kept as is
    description: str
    fmt: str = "count"
    labels: dict[str, str] = field(default_factory=dict)  # labels the alert carries in the tests
    series: Callable[[float, int], list[Series]] | None = None  # input making the signal == value
    when: str = ""  # state alerts: the comparison, e.g. "== 0"
    key: str = ""  # state alerts only: a tiered alert's key is its signal's
    fire: Callable[[int], list[Series]] | None = None  # state alerts: input that must fire
    quiet: Callable[[int], list[Series]] | None = None  # ... and one that must not

    def __post_init__(self) -> None:
        if self.signal.key:
            if self.key or self.when:
                raise ValueError(f"{self.name}: a tiered alert takes its key from its signal ({self.signal.key})")
            self.key = self.signal.key
        elif not (self.key and self.when):
            raise ValueError(f"{self.name}: a state alert needs `key` and `when`")

    @property
    def lhs(self) -> str:
        """The watched expression: the rule's `expr` without its comparison."""
        return self.signal.expr()

    def is_state(self) -> bool:
        return self.signal.key is None


def _open_connections_series(v: float, minutes: int) -> list[Series]:
    # a busy server: 15 connections accepted and 15 closed per minute (some with an error), v open
    # throughout; failed accepts grow too and must not count
    return [
        (_sel("ferretdb_client_accepts_total", {**FERRETDB, "error": "0"}), f"{_num(v + 100)}+15x{minutes}"),
        (_sel("ferretdb_client_accepts_total", {**FERRETDB, "error": "1"}), f"0+50x{minutes}"),
        (_sel("ferretdb_client_duration_seconds_count", {**FERRETDB, "error": "0"}), f"80+10x{minutes}"),
        (_sel("ferretdb_client_duration_seconds_count", {**FERRETDB, "error": "1"}), f"20+5x{minutes}"),
    ]


def _disk_filling(for_min: int, fire: bool, minutes: int) -> list[Series]:
    # 100 GB free, falling by 100 MB a minute: empty in under 17 h. Quiet: steady until the last
    # `for` - 1 minutes, so the prediction turns negative too late to fire.
    size = gauge(s.FS_SIZE, VOLUME, DISK_SIZE, minutes)
    if fire:
        return [size, (_sel(s.FS_AVAIL, VOLUME), f"{_num(DISK_SIZE)}-100000000x{minutes}")]
    steady = minutes - max(for_min - 1, 0)
    return [
        size,
        (
            _sel(s.FS_AVAIL, VOLUME),
            f"{_num(DISK_SIZE)}x{steady} {_num(DISK_SIZE - 1e8)}-100000000x{minutes - steady - 1}",
        ),
    ]


def _state_flip(
    metric: str, labels: dict[str, str], good: float, bad: float, for_min: int, fire: bool, minutes: int
) -> list[Series]:
    if fire:
        return [gauge(metric, labels, bad, minutes)]
    # bad for the last `for` - 1 minutes up to the evaluation (with `for: 1m`, bad at the evaluation
    # only): pending, never firing
    bad_minutes = max(for_min - 1, 0)
    return [(_sel(metric, labels), f"{_num(good)}x{minutes - bad_minutes - 1} {_num(bad)}x{bad_minutes}")]


def _counter_flip(metric: str, labels: dict[str, str], for_min: int, fire: bool, minutes: int) -> list[Series]:
    if fire:
        return [counter(metric, labels, 1, minutes)]
    # flat for most of the window, growing for less than `for`
    grow = max(for_min - 1, 0)
    return [(_sel(metric, labels), f"5x{minutes - grow} 6+1x{grow}")]


def alerts() -> list[Alert]:
    A = Alert
    return [
        A(
            "ScaleMartHighErrorRate",
            "scalemart-api",
            s.ERROR_RATIO,
            "ScaleMart API is answering with server errors.",
            "{{{{ $labels.instance }}}} answered {value} of requests with a 5xx status over 5m "
            "(threshold {threshold}).",
            fmt="percent",
            labels={"env": "test", "instance": APP["instance"]},
            series=lambda v, m: [
                counter(
                    "scalemart_http_requests_total",
                    {**APP, "route": "/api/buy", "method": "POST", "status": "200"},
                    600 * (1 - v),
                    m,
                ),
                counter(
                    "scalemart_http_requests_total",
                    {**APP, "route": "/api/buy", "method": "POST", "status": "500"},
                    600 * v,
                    m,
                ),
            ],
        ),
        A(
            "ScaleMartLatencySLOBreach",
            "scalemart-api",
            s.LATENCY_P95,
            "ScaleMart API p95 latency is above the SLO.",
            "p95 latency on {{{{ $labels.instance }}}} is {value} over 5m (SLO {threshold}).",
            fmt="duration",
            labels={"env": "test", "instance": APP["instance"]},
            series=lambda v, m: histogram(
                "scalemart_http_request_duration_seconds", {**APP, "route": "/api/buy", "method": "POST"}, 0.95, v, m
            ),
        ),
        A(
            "ScaleMartSlowResponses",
            "scalemart-api",
            s.LATENCY_P99,
            "ScaleMart API responses are slow.",
            "p99 response time on {{{{ $labels.instance }}}} is {value} over 5m (threshold {threshold}).",
            fmt="duration",
            labels={"env": "test", "instance": APP["instance"]},
            series=lambda v, m: histogram(
                "scalemart_http_request_duration_seconds", {**APP, "route": "/api/buy", "method": "POST"}, 0.99, v, m
            ),
        ),
        A(
            "ScaleMartConcurrentUsersHigh",
            "scalemart-api",
            s.ACTIVE_USERS,
            "More shoppers are active than the shop is sized for.",
            "{value} distinct users were active in the last 5 minutes in {{{{ $labels.env }}}} "
            "(threshold {threshold}).",
            fmt="count",
            labels={"env": "test"},
            series=lambda v, m: [gauge("scalemart_active_users", APP, v, m)],
        ),
        A(
            "HostHighCpuUsage",
            "scalemart-hosts",
            s.CPU_USAGE,
            "A host is using nearly all the CPU it may use.",
            "CPU usage on {{{{ $labels.instance }}}} is {value} of its limit for 5m (threshold {threshold}).",
            fmt="percent",
            labels={"env": "test", "instance": NODE["instance"]},
            series=lambda v, m: [
                counter("scalemart_host_cpu_usage_seconds_total", NODE, 60 * 2 * v, m),
                gauge("scalemart_host_cpu_limit_cores", NODE, 2, m),
            ],
        ),
        A(
            "HostHighMemoryUsage",
            "scalemart-hosts",
            s.MEMORY_USAGE,
            "A host is running out of memory.",
            "Memory in use on {{{{ $labels.instance }}}} is {value} of its limit (threshold {threshold}).",
            fmt="percent",
            labels={"env": "test", "instance": NODE["instance"]},
            series=lambda v, m: [
                gauge("scalemart_host_memory_limit_bytes", NODE, 512e6, m),
                gauge("scalemart_host_memory_working_set_bytes", NODE, 512e6 * v, m),
            ],
        ),
        A(
            "HostDiskSpaceLow",
            "scalemart-hosts",
            s.DISK_USED,
            "A mount is running out of space.",
            "{{{{ $labels.mountpoint }}}} on {{{{ $labels.instance }}}} is {value} full (threshold {threshold}).",
            fmt="percent",
            labels=VOLUME,
            series=lambda v, m: [
                gauge(s.FS_SIZE, VOLUME, DISK_SIZE, m),
                gauge(s.FS_AVAIL, VOLUME, DISK_SIZE * (1 - v), m),
            ],
        ),
        A(
            "HostDiskFillingUp",
            "scalemart-hosts",
            s.DISK_FILLING,
            "A mount will be full within 24 hours.",
            "At the rate of the last 6 hours, {{{{ $labels.mountpoint }}}} on {{{{ $labels.instance }}}} runs out "
            'of space within 24 hours (free in 24 h: {{{{ $value | printf "%.0f" }}}} bytes; for {for_}).',
            when="< 0",
            key="hosts.disk_full_within_24h",
            labels=VOLUME,
            fire=lambda f: _disk_filling(f, True, f + 10),
            quiet=lambda f: _disk_filling(f, False, f + 10),
        ),
        A(
            "ProbeFailed",
            "scalemart-hosts",
            s.PROBE_SUCCESS,
            "A black-box probe is failing.",
            "The {{{{ $labels.probe }}}} probe of {{{{ $labels.instance }}}} has failed for {for_} "
            "(probe_success = {{{{ $value }}}}).",
            when="== 0",
            key="hosts.probe_failed",
            labels={"env": "test", "probe": PROBE["probe"], "instance": PROBE["instance"]},
            fire=lambda f: _state_flip("probe_success", PROBE, 1, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("probe_success", PROBE, 1, 0, f, False, f + 10),
        ),
        A(
            "PrometheusTargetDown",
            "scalemart-hosts",
            s.TARGET_UP,
            "Prometheus cannot scrape a target.",
            "{{{{ $labels.job }}}} target {{{{ $labels.instance }}}} has not answered a scrape for {for_} "
            "(up = {{{{ $value }}}}).",
            when="== 0",
            key="hosts.target_down",
            labels=NODE,
            fire=lambda f: _state_flip("up", NODE, 1, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("up", NODE, 1, 0, f, False, f + 10),
        ),
        A(
            "RedisDown",
            "scalemart-datastores",
            s.REDIS_UP,
            "Redis is down: stock and carts are unavailable.",
            "The Redis exporter {{{{ $labels.instance }}}} cannot reach Redis (redis_up = {{{{ $value }}}}) "
            "for {for_}.",
            when="== 0",
            key="datastores.redis_down",
            labels=REDIS,
            fire=lambda f: _state_flip("redis_up", REDIS, 1, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("redis_up", REDIS, 1, 0, f, False, f + 10),
        ),
        A(
            "MongoDBDown",
            "scalemart-datastores",
            s.MONGODB_UP,
            "MongoDB is down: orders cannot be persisted.",
            "The MongoDB exporter (Percona mongodb_exporter) {{{{ $labels.instance }}}} cannot reach the order "
            "database (mongodb_up = {{{{ $value }}}}) for {for_}.",
            when="== 0",
            key="datastores.mongodb_down",
            labels=MONGO,
            fire=lambda f: _state_flip("mongodb_up", MONGO, 1, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("mongodb_up", MONGO, 1, 0, f, False, f + 10),
        ),
        A(
            "MongoDBTooManyConnections",
            "scalemart-datastores",
            s.OPEN_CONNECTIONS,
            "MongoDB has too many open connections.",
            "FerretDB {{{{ $labels.instance }}}} holds {value} open client connections (threshold {threshold}).",
            fmt="count",
            labels={"env": "test", "instance": FERRETDB["instance"]},
            series=_open_connections_series,
        ),
        A(
            "RedisMemoryNearLimit",
            "scalemart-datastores",
            s.REDIS_MEMORY,
            "Redis is close to its maxmemory: purchases fail once it is full.",
            "Redis {{{{ $labels.instance }}}} uses {value} of its maxmemory (threshold {threshold}); with "
            "noeviction, writes fail at the limit.",
            fmt="percent",
            labels={"env": "test", "instance": REDIS["instance"]},
            series=lambda v, m: [
                gauge("redis_memory_max_bytes", REDIS, 256e6, m),
                gauge("redis_memory_used_bytes", REDIS, 256e6 * v, m),
            ],
        ),
        A(
            "ScaleMartLowCacheHitRatio",
            "scalemart-datastores",
            s.CACHE_HIT_RATIO,
            "The ScaleMart read cache is missing too often.",
            "Cache hit ratio in {{{{ $labels.env }}}} is {value} over 5m (threshold {threshold}).",
            fmt="percent",
            labels={"env": "test"},
            series=lambda v, m: [
                counter("scalemart_cache_hits_total", APP, 600 * v, m),
                counter("scalemart_cache_misses_total", APP, 600 * (1 - v), m),
            ],
        ),
        A(
            "ScaleMartQueueBacklog",
            "scalemart-worker",
            s.QUEUE_LENGTH,
            "The order queue is backing up.",
            "{value} orders are waiting in the queue in {{{{ $labels.env }}}} (threshold {threshold}).",
            fmt="count",
            labels={"env": "test"},
            series=lambda v, m: [gauge("scalemart_queue_length", WORKER, v, m)],
        ),
        A(
            "ScaleMartWorkerStalled",
            "scalemart-worker",
            s.HEARTBEAT_AGE,
            "The order worker has stopped reporting.",
            "Worker {{{{ $labels.instance }}}} last sent a heartbeat {value} ago (threshold {threshold}).",
            fmt="duration",
            labels={"env": "test", "instance": WORKER["instance"]},
            series=lambda v, m: [timestamp_aged("scalemart_worker_heartbeat_timestamp_seconds", WORKER, v, m)],
        ),
        A(
            "ScaleMartLowStock",
            "scalemart-business",
            s.STOCK_LEFT,
            "A product still on sale is nearly sold out.",
            "Product {{{{ $labels.product }}}} has {value} units left in {{{{ $labels.env }}}} "
            "(threshold {threshold}).",
            fmt="count",
            labels={"env": "test", "product": "p-1"},
            series=lambda v, m: [gauge("scalemart_stock_left", {**APP, "product": "p-1"}, v, m)],
        ),
        A(
            "ScaleMartSoldOut",
            "scalemart-business",
            s.SOLD_OUT,
            "A product is sold out.",
            "Product {{{{ $labels.product }}}} has no units left in {{{{ $labels.env }}}} (stock = {{{{ $value }}}}): "
            "the expected end of its flash sale, unless it sold out earlier than planned.",
            when="== 0",
            key="business.sold_out",
            labels={"env": "test", "product": "p-1"},
            fire=lambda f: _state_flip("scalemart_stock_left", {**APP, "product": "p-1"}, 5, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("scalemart_stock_left", {**APP, "product": "p-1"}, 5, 0, f, False, f + 10),
        ),
        A(
            "ScaleMartBackupTooOld",
            "scalemart-backups",
            s.BACKUP_AGE,
            "The last successful backup is too old.",
            "The last successful {{{{ $labels.kind }}}} backup in {{{{ $labels.env }}}} finished {value} h ago "
            "(threshold {threshold} h).",
            fmt="hours",
            labels={"env": "test", "kind": "mongodb"},
            series=lambda v, m: [
                timestamp_aged("scalemart_backup_last_success_timestamp_seconds", BACKUP, v * 3600, m)
            ],
        ),
        A(
            "PrometheusRuleEvaluationFailures",
            "scalemart-monitoring",
            s.RULE_EVALUATION_FAILURES,
            "Prometheus is failing to evaluate rules.",
            '{{{{ $labels.instance }}}} failed {{{{ $value | printf "%.0f" }}}} rule evaluations in the last 5m: '
            "alerts may be missing.",
            when="> 0",
            key="monitoring.rule_evaluation_failures",
            labels={"env": "test", "instance": PROM["instance"]},
            fire=lambda f: _counter_flip("prometheus_rule_evaluation_failures_total", PROM, f, True, f + 10),
            quiet=lambda f: _counter_flip("prometheus_rule_evaluation_failures_total", PROM, f, False, f + 10),
        ),
        A(
            "PrometheusConfigReloadFailed",
            "scalemart-monitoring",
            s.PROMETHEUS_CONFIG_LOADED,
            "Prometheus could not load its latest configuration.",
            "{{{{ $labels.instance }}}} is still running an older configuration: the last reload failed "
            "(last_reload_successful = {{{{ $value }}}}).",
            when="== 0",
            key="monitoring.config_reload_failed",
            labels=PROM,
            fire=lambda f: _state_flip("prometheus_config_last_reload_successful", PROM, 1, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("prometheus_config_last_reload_successful", PROM, 1, 0, f, False, f + 10),
        ),
        A(
            "AlertmanagerConfigReloadFailed",
            "scalemart-monitoring",
            s.ALERTMANAGER_CONFIG_LOADED,
            "Alertmanager could not load its latest configuration.",
            "{{{{ $labels.instance }}}} is still routing with an older configuration: the last reload failed "
            "(last_reload_successful = {{{{ $value }}}}).",
            when="== 0",
            key="monitoring.config_reload_failed",
            labels=AM,
            fire=lambda f: _state_flip("alertmanager_config_last_reload_successful", AM, 1, 0, f, True, f + 10),
            quiet=lambda f: _state_flip("alertmanager_config_last_reload_successful", AM, 1, 0, f, False, f + 10),
        ),
        A(
            "PrometheusStorageNearRetentionLimit",
            "scalemart-monitoring",
            s.TSDB_RETENTION,
            "Prometheus' storage is close to its size-based retention.",
            "The TSDB of {{{{ $labels.instance }}}} holds {value} of its retention size (threshold {threshold}): "
            "at the limit the oldest data, and the SLO windows with it, go before their time.",
            fmt="percent",
            labels={"env": "test", "instance": PROM["instance"]},
            series=lambda v, m: [
                gauge("prometheus_tsdb_retention_limit_bytes", PROM, 2e9, m),
                gauge("prometheus_tsdb_storage_blocks_bytes", PROM, 2e9 * v, m),
            ],
        ),
        A(
            "AlertmanagerNotificationsFailing",
            "scalemart-monitoring",
            s.NOTIFICATION_FAILURES,
            "Alertmanager cannot deliver notifications.",
            "{{{{ $labels.instance }}}} fails to send {{{{ $labels.integration }}}} notifications "
            '({{{{ $value | printf "%.3f" }}}}/s over 5m): people may not be paged.',
            when="> 0",
            key="monitoring.notification_failures",
            labels={"env": "test", "instance": AM["instance"], "integration": "email"},
            fire=lambda f: _counter_flip(
                "alertmanager_notifications_failed_total", {**AM, "integration": "email"}, f, True, f + 10
            ),
            quiet=lambda f: _counter_flip(
                "alertmanager_notifications_failed_total", {**AM, "integration": "email"}, f, False, f + 10
            ),
        ),
        A(
            "ScaleMartLoginFailureBurst",
            "scalemart-security",
            s.LOGIN_FAILURES,
            "A burst of failed logins: possible credential stuffing.",
            "{value} failed logins per minute in {{{{ $labels.env }}}} over 5m (threshold {threshold}/min).",
            fmt="rate",
            labels={"env": "test"},
            series=lambda v, m: [counter("scalemart_login_failures_total", APP, v, m)],
        ),
        A(
            "ScaleMartRateLimitViolations",
            "scalemart-security",
            s.RATE_LIMITED,
            "Clients are hitting the rate limiter.",
            "{value} requests per minute were rejected by the rate limiter in {{{{ $labels.env }}}} over 5m "
            "(threshold {threshold}/min).",
            fmt="rate",
            labels={"env": "test"},
            series=lambda v, m: [counter("scalemart_rate_limited_total", APP, v, m)],
        ),
        A(
            "ScaleMartBalancerRateLimited",
            "scalemart-security",
            s.BALANCER_RATE_LIMITED,
            "The load balancer is turning clients away with 429.",
            "{value} requests per minute got 429 from the load balancer's per-address limit in {{{{ $labels.env }}}} "
            "over 5m (threshold {threshold}/min).",
            fmt="rate",
            labels={"env": "test"},
            series=lambda v, m: [
                counter(s.LB_RESPONSES, {**LB, "code": "200"}, 600, m),
                counter(s.LB_RESPONSES, {**LB, "code": "429"}, v, m),
            ],
        ),
        A(
            "ScaleMartTokenFailureBurst",
            "scalemart-security",
            s.TOKEN_FAILURES,
            "A burst of refused buyer tokens: forged tokens, a rotated key or clock skew.",
            "{value} buyer requests per minute were refused with 401 for a token that is {{{{ $labels.reason }}}} in "
            "{{{{ $labels.env }}}} over 5m (threshold {threshold}/min).",
            fmt="rate",
            labels={"env": "test", "reason": "bad_signature"},
            series=lambda v, m: [
                counter(
                    "scalemart_http_requests_total",
                    {**APP, "route": "/api/buy", "method": "POST", "status": "201"},
                    600,
                    m,
                ),
                counter("scalemart_token_failures_total", {**APP, "reason": "bad_signature"}, v, m),
                # another reason below the line fires nothing of its own
                counter("scalemart_token_failures_total", {**APP, "reason": "expired"}, v / 10, m),
            ],
        ),
        A(
            "ScaleMartInjectionAttempts",
            "scalemart-security",
            s.INJECTION_ATTEMPTS,
            "Requests carrying injection shapes keep coming.",
            '{{{{ $value | printf "%.1f" }}}} requests per minute carrying a MongoDB operator or another injection '
            "shape were refused in {{{{ $labels.env }}}} over 5m, for {for_}: someone is probing the API's inputs.",
            when="> 0",
            key="security.injection_attempts",
            labels={"env": "test"},
            fire=lambda f: _counter_flip("scalemart_injection_attempts_total", APP, f, True, f + 10),
            quiet=lambda f: _counter_flip("scalemart_injection_attempts_total", APP, f, False, f + 10),
        ),
        A(
            "ScaleMartOversizedBodies",
            "scalemart-security",
            s.OVERSIZED_BODIES,
            "Requests with oversized bodies are being refused.",
            "{value} requests per minute were refused with 413 (body over SCALEMART_MAX_BODY_BYTES) in "
            "{{{{ $labels.env }}}} over 5m (threshold {threshold}/min).",
            fmt="rate",
            labels={"env": "test"},
            series=lambda v, m: [counter("scalemart_oversized_bodies_total", APP, v, m)],
        ),
        A(
            "ScaleMartClientScanning",
            "scalemart-security",
            s.CLIENT_ERRORS,
            "A client address is collecting 401/403/404 answers: scanning.",
            "{{{{ $labels.client }}}} got {value} answers per minute with 401, 403 or 404 from the load balancer in "
            "{{{{ $labels.env }}}} over 5m (threshold {threshold}/min).",
            fmt="rate",
            labels={"env": "test", "client": SCANNER},
            series=lambda v, m: [
                counter(s.LB_RESPONSES, {**LB, "code": "200"}, 600, m),
                counter(s.LB_CLIENT_ERRORS, {**LB, "client": SCANNER, "code": "404"}, v / 2, m),
                counter(s.LB_CLIENT_ERRORS, {**LB, "client": SCANNER, "code": "401"}, v / 4, m),
                counter(s.LB_CLIENT_ERRORS, {**LB, "client": SCANNER, "code": "403"}, v / 4, m),
                # a shopper's stray 404s, counted apart from the scanner's
                counter(s.LB_CLIENT_ERRORS, {**LB, "client": SHOPPER, "code": "404"}, v / 10, m),
            ],
        ),
    ]


WATCHDOG = "Watchdog"


def _watchdog(runbook_base: str) -> dict[str, Any]:
    return {
        "alert": WATCHDOG,
        "expr": "vector(1)",
        "labels": {"severity": "info"},
        "annotations": {
            "summary": "Always firing: proves the alerting pipeline is alive.",
            "description": "This alert fires all the time on purpose. If the heartbeat receiver stops getting it, "
            "Prometheus, rule evaluation or Alertmanager is broken.",
            "runbook_url": f"{runbook_base}/{WATCHDOG}.md",
        },
    }


def minutes_of(th: Threshold) -> int:
    return max(1, math.ceil(th.for_seconds / 60))


def render_description(alert: Alert, th: Threshold, severity: str | None) -> str:
    """The Go template of the description for one tier (severity None: a state alert)."""
    fields: dict[str, str] = {"for_": th.for_}
    if not alert.is_state():
        pipe, _, prose = FORMATS[alert.fmt]
        fields["threshold"] = prose(th.values[severity]) if severity else ""
        fields["value"] = f"{{{{ $value | {pipe} }}}}"
    return alert.description.format(**fields)


def rule_entries(alert: Alert, th: Threshold, runbook_base: str) -> list[dict[str, Any]]:
    runbook = f"{runbook_base}/{alert.name}.md"
    if alert.is_state():
        assert th.severity is not None
        return [
            {
                "alert": alert.name,
                "expr": f"{alert.lhs} {alert.when}",
                "for": th.for_,
                "labels": {"severity": th.severity},
                "annotations": {
                    "summary": alert.summary,
                    "description": render_description(alert, th, None),
                    "runbook_url": runbook,
                },
            }
        ]
    out = []
    for severity, value in th.tiers():
        out.append(
            {
                "alert": alert.name,
                "expr": alert.signal.breach(value, th.low_is_bad),
                "for": th.for_,
                "labels": {"severity": severity},
                "annotations": {
                    "summary": alert.summary,
                    "description": render_description(alert, th, severity),
                    "runbook_url": runbook,
                },
            }
        )
    return out


def rule_groups(t: Thresholds, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, dict[str, Any]]:
    """{group name: {"groups": [...]}} ready to dump as one rule file per group."""
    groups: dict[str, list[dict[str, Any]]] = {"scalemart-monitoring": [_watchdog(runbook_base)]}
    for alert in alerts():
        groups.setdefault(alert.group, []).extend(rule_entries(alert, t[alert.key], runbook_base))
    out = {name: {"groups": [{"name": name, "rules": rules}]} for name, rules in sorted(groups.items())}
    from alert_rules import records, slo  # slo builds on this module

    return {**out, slo.GROUP: slo.rule_group(t, runbook_base), records.GROUP: records.rule_group()}


def alert_names() -> list[str]:
    from alert_rules import slo

    return sorted({a.name for a in alerts()} | {WATCHDOG} | set(slo.alert_names()))
