"""PromQL signals: the one home of every expression the alert rules and the dashboards share.

As prometheus/node_exporter's node-mixin does with its signals, a quantity is written once, here, and
both sides draw on it, so a panel and its alert can never disagree:

    from alert_rules import signals as s
    s.CPU_USAGE.expr()          # what HostHighCpuUsage compares with each tier of s.CPU_USAGE.key
    s.CPU_USAGE.panel()         # what the "CPU usage by host" panel queries, its line from the same key

A `Signal` is a name, its PromQL (any selector, always the window its alert evaluates) and, when its
alert compares it with numbers, the thresholds.yml key. A panel that draws that key's line queries
`panel()`: the alert's expression with the dashboards' `env` variable in every selector, and nothing
else changed (tests/observability/test_signals.py holds both sides to that). Breakdowns that no alert
watches (requests by route, p50) use the same metric helpers through `PANELS`, on Grafana's window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ALERT_WINDOW = "5m"
PANEL_SELECTOR = 'env=~"$env"'  # the dashboards' env variable; one Grafana serves every environment
PANEL_WINDOW = "$__rate_interval"

# metrics read by more than one query below
HTTP_REQUESTS = "scalemart_http_requests_total"
HTTP_DURATION_BUCKET = "scalemart_http_request_duration_seconds_bucket"
CACHE_HITS, CACHE_MISSES = "scalemart_cache_hits_total", "scalemart_cache_misses_total"
NOTIFICATIONS_FAILED = "alertmanager_notifications_failed_total"
# every answer nginx gave, by status `code`: mtail over the balancer's access log (roles/exporters, job `lb-log`)
LB_RESPONSES = "scalemart_lb_responses_total"
RATE_LIMITED_CODE = 'code="429"'
# 401, 403 and 404 answers of nginx by client address and `code` (mtail; only those codes, so only an erring
# address has a series)
LB_CLIENT_ERRORS = "scalemart_lb_client_errors_total"
SERVER_ERROR = 'status=~"5.."'
IDLE = 'mode="idle"'
# Mounts with space of their own: not memory-backed ones, not a container's overlay root, and not the
# files Docker bind-mounts into /etc (hosts, hostname, resolv.conf), which only repeat the disk under them.
REAL_FILESYSTEMS = ('fstype!~"tmpfs|overlay|squashfs"', 'mountpoint!~"/etc/.+"')
FS_AVAIL, FS_SIZE = "node_filesystem_avail_bytes", "node_filesystem_size_bytes"
# How far ahead the disk prediction looks, and over how much history it fits its line.
DISK_PREDICTION_HORIZON_SECONDS, DISK_PREDICTION_HISTORY = 24 * 3600, "6h"


def number(v: float) -> str:
    """A threshold as PromQL and promtool's series notation want it: a plain decimal."""
    text = f"{v:.10f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


@dataclass(frozen=True)
class Scope:
    """Where a query runs: the matchers every selector starts with, and the window of its rates."""

    selector: str = ""
    window: str = ALERT_WINDOW

    def sel(self, metric: str, *matchers: str) -> str:
        inner = ",".join(m for m in (self.selector, *matchers) if m)
        return f"{metric}{{{inner}}}" if inner else metric

    def rate(self, metric: str, *matchers: str) -> str:
        return f"rate({self.sel(metric, *matchers)}[{self.window}])"

    def sum_rate(self, metric: str, *matchers: str, by: str = "") -> str:
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping} ({self.rate(metric, *matchers)})"

    def per_minute(self, metric: str, *matchers: str, by: str = "") -> str:
        return f"{self.sum_rate(metric, *matchers, by=by)} * 60"

    def sum_increase(self, metric: str, *matchers: str, over: str) -> str:
        return f"sum(increase({self.sel(metric, *matchers)}[{over}]))"

    def quantile(self, q: float, bucket_metric: str, by: str = "") -> str:
        grouping = ", ".join(p for p in (by, "le") if p)
        return f"histogram_quantile({q}, sum by ({grouping}) ({self.rate(bucket_metric)}))"

    def age_seconds(self, timestamp_metric: str, by: str) -> str:
        return f"time() - max by ({by}) ({self.sel(timestamp_metric)})"


def ratio(numerator: str, denominator: str) -> str:
    return f"({numerator})\n/ ({denominator})"


PANELS = Scope(PANEL_SELECTOR, PANEL_WINDOW)  # dashboard breakdowns no alert watches


@dataclass(frozen=True)
class Signal:
    """One measured quantity: `name`, what it is, `build` writing its PromQL for a scope, and `key`, the
    thresholds.yml key its alert compares it with (None: a state signal, compared with a constant)."""

    name: str
    description: str
    build: Callable[[Scope], str]
    key: str | None = None

    def expr(self, selector: str = "") -> str:
        """The PromQL, every selector starting with `selector`, on the alert window."""
        return self.build(Scope(selector, ALERT_WINDOW))

    def panel(self) -> str:
        """As a dashboard queries it: the env variable in every selector, the alert's own window, so the
        threshold line drawn from `key` is exactly where the alert fires."""
        return self.expr(PANEL_SELECTOR)

    def breach(self, value: float, low_is_bad: bool = False, selector: str = "") -> str:
        """The condition of one tier: `<signal> > value` (`<` where low is bad)."""
        return f"{self.expr(selector)}\n{'<' if low_is_bad else '>'} {number(value)}"


# ----- queries over the metrics signals read, for the dashboards' breakdowns (the names stay here) -----


def http_requests(sc: Scope, *matchers: str, by: str = "") -> str:
    """API requests per second (from the app's `scalemart_http_requests_total`)."""
    return sc.sum_rate(HTTP_REQUESTS, *matchers, by=by)


def http_latency(sc: Scope, q: float, by: str = "") -> str:
    """A latency quantile of the API, from its request-duration histogram."""
    return sc.quantile(q, HTTP_DURATION_BUCKET, by)


def cache_reads(sc: Scope, hits: bool) -> str:
    """Read-cache hits (or misses) per second."""
    return sc.sum_rate(CACHE_HITS if hits else CACHE_MISSES)


def notifications_failed(sc: Scope, by: str) -> str:
    """Alertmanager's failed notification attempts per second."""
    return sc.sum_rate(NOTIFICATIONS_FAILED, by=by)


def notifications_failed_over(sc: Scope, over: str) -> str:
    """Failed notification attempts in the last `over` (a count, for a stat)."""
    return sc.sum_increase(NOTIFICATIONS_FAILED, over=over)


def _error_ratio(sc: Scope) -> str:
    # 5xx / all per instance; with no 5xx series yet (a healthy shop) 0 rather than nothing, and 1, not
    # nothing, when every request fails (`1 - ok/all` would miss that right after a restart)
    by = "env, instance"
    return (
        f"({http_requests(sc, SERVER_ERROR, by=by)}\n or {http_requests(sc, by=by)} * 0)\n/ {http_requests(sc, by=by)}"
    )


def _cache_hit_ratio(sc: Scope) -> str:
    hits, misses = sc.sum_rate(CACHE_HITS, by="env"), sc.sum_rate(CACHE_MISSES, by="env")
    return f"{hits}\n/ ({hits} + {misses})"


def _open_connections(sc: Scope) -> str:
    """Open client connections of each FerretDB process: accepted minus closed.

    FerretDB 1.24 has no open-connections gauge. `ferretdb_client_accepts_total{error="0"}` counts
    accepted connections (error="1" are failed accept() calls, never connections) and every accepted
    connection observes `ferretdb_client_duration_seconds` once when it closes, whatever its error
    label. Both counters live in the same process and reset together, so their difference is a gauge:
    it must not be wrapped in rate(). The duration series only appear once a connection has closed:
    until then closed = 0 (the `or ... * 0`), rather than the whole expression being empty.
    """
    accepted = sc.sel("ferretdb_client_accepts_total", 'error="0"')
    return (
        f"sum by (env, instance) ({accepted})\n"
        f"- sum by (env, instance) ({sc.sel('ferretdb_client_duration_seconds_count')} or {accepted} * 0)"
    )


# ----- signals an alert watches, compared with the tiers of their thresholds key -----

ERROR_RATIO = Signal(
    "error_ratio", "share of responses with a 5xx status, per app instance", _error_ratio, "api.error_ratio"
)
LATENCY_P95 = Signal(
    "latency_p95",
    "p95 latency per app instance",
    lambda sc: http_latency(sc, 0.95, "env, instance"),
    "api.latency_p95_seconds",
)
LATENCY_P99 = Signal(
    "latency_p99",
    "p99 response time per app instance",
    lambda sc: http_latency(sc, 0.99, "env, instance"),
    "api.response_time_p99_seconds",
)
ACTIVE_USERS = Signal(
    "active_users",
    "distinct users active in the last 5 minutes, per environment",
    lambda sc: f"max by (env) ({sc.sel('scalemart_active_users')})",
    "api.concurrent_users",
)
# A host's own limits, from the node exporter's textfile (roles/exporters): its cgroup's CPU quota and
# memory limit on a container host, where /proc shows the whole machine; the machine's on a VM.
CPU_USAGE = Signal(
    "cpu_usage",
    "busy share of the CPUs a host may use (its cgroup quota, or the machine's)",
    lambda sc: (
        f"sum by (env, instance) ({sc.rate('scalemart_host_cpu_usage_seconds_total')})\n"
        f"/ max by (env, instance) ({sc.sel('scalemart_host_cpu_limit_cores')})"
    ),
    "hosts.cpu_ratio",
)
MEMORY_USAGE = Signal(
    "memory_usage",
    "share of a host's memory limit in use (working set: without the page cache it can drop)",
    lambda sc: (
        f"max by (env, instance) ({sc.sel('scalemart_host_memory_working_set_bytes')})\n"
        f"/ max by (env, instance) ({sc.sel('scalemart_host_memory_limit_bytes')})"
    ),
    "hosts.memory_ratio",
)
DISK_USED = Signal(
    "disk_used",
    "share of each mount's space in use, per host and mount point",
    lambda sc: f"1 - {sc.sel(FS_AVAIL, *REAL_FILESYSTEMS)}\n/ {sc.sel(FS_SIZE, *REAL_FILESYSTEMS)}",
    "hosts.disk_used_ratio",
)
REDIS_MEMORY = Signal(
    "redis_memory",
    "Redis used memory against its maxmemory, per instance",
    lambda sc: (
        f"max by (env, instance) ({sc.sel('redis_memory_used_bytes')})\n"
        f"/ max by (env, instance) ({sc.sel('redis_memory_max_bytes')} > 0)"
    ),
    "datastores.redis_memory_ratio",
)
# Blocks only: Debian's Prometheus 2.42 exports no WAL size, and the WAL stays a few segments.
TSDB_RETENTION = Signal(
    "tsdb_retention",
    "Prometheus' persisted TSDB blocks against its size-based retention, per instance",
    lambda sc: (
        f"max by (env, instance) ({sc.sel('prometheus_tsdb_storage_blocks_bytes')})\n"
        f"/ max by (env, instance) ({sc.sel('prometheus_tsdb_retention_limit_bytes')} > 0)"
    ),
    "monitoring.tsdb_retention_ratio",
)
OPEN_CONNECTIONS = Signal(
    "open_connections",
    "open MongoDB (FerretDB) client connections, per instance",
    _open_connections,
    "datastores.database_connections",
)
CACHE_HIT_RATIO = Signal(
    "cache_hit_ratio",
    "read-cache hits / (hits + misses), per environment",
    _cache_hit_ratio,
    "datastores.cache_hit_ratio",
)
QUEUE_LENGTH = Signal(
    "queue_length",
    "orders waiting in the queue, per environment",
    lambda sc: f"max by (env) ({sc.sel('scalemart_queue_length')})",
    "worker.queue_length",
)
HEARTBEAT_AGE = Signal(
    "heartbeat_age",
    "seconds since each worker's last heartbeat",
    lambda sc: sc.age_seconds("scalemart_worker_heartbeat_timestamp_seconds", "env, instance"),
    "worker.heartbeat_age_seconds",
)
# Sold out is the expected end of a flash sale, not low stock: SOLD_OUT tells it apart.
STOCK_LEFT = Signal(
    "stock_left",
    "units left of each product still on sale (sold-out ones: SOLD_OUT)",
    lambda sc: f"min by (env, product) ({sc.sel('scalemart_stock_left')}) > 0",
    "business.stock_left",
)
BACKUP_AGE = Signal(
    "backup_age",
    "hours since the last successful backup of each kind",
    lambda sc: f"({sc.age_seconds('scalemart_backup_last_success_timestamp_seconds', 'env, kind')}) / 3600",
    "backups.last_success_age_hours",
)
LOGIN_FAILURES = Signal(
    "login_failures",
    "failed logins per minute, per environment",
    lambda sc: sc.per_minute("scalemart_login_failures_total", by="env"),
    "security.login_failures_per_minute",
)
RATE_LIMITED = Signal(
    "rate_limited",
    "requests the rate limiter rejected per minute, per environment",
    lambda sc: sc.per_minute("scalemart_rate_limited_total", by="env"),
    "security.rate_limited_per_minute",
)


def _balancer_rate_limited(sc: Scope) -> str:
    # nginx's own refusals (limit_req, per client address), before the app sees the request; 0 rather than
    # nothing while no client has been turned away yet (mtail has no code="429" series until the first one)
    limited, answered = sc.sum_rate(LB_RESPONSES, RATE_LIMITED_CODE, by="env"), sc.sum_rate(LB_RESPONSES, by="env")
    return f"({limited}\n or {answered} * 0) * 60"


BALANCER_RATE_LIMITED = Signal(
    "balancer_rate_limited",
    "requests the load balancer turned away with 429 per minute, per environment",
    _balancer_rate_limited,
    "security.balancer_rate_limited_per_minute",
)


def _token_failures(sc: Scope) -> str:
    # by reason; 0 per environment rather than nothing before the first refusal (a labelled counter has no series
    # until then). `on (env)`: the 0 only where no reason has a series, never beside them
    refused, answered = sc.sum_rate("scalemart_token_failures_total", by="env, reason"), http_requests(sc, by="env")
    return f"({refused}\n or on (env) {answered} * 0) * 60"


TOKEN_FAILURES = Signal(
    "token_failures",
    "buyer requests refused for their token (401) per minute, per environment and reason",
    _token_failures,
    "security.token_failures_per_minute",
)
OVERSIZED_BODIES = Signal(
    "oversized_bodies",
    "requests refused with 413 for their body size per minute, per environment",
    lambda sc: sc.per_minute("scalemart_oversized_bodies_total", by="env"),
    "security.oversized_bodies_per_minute",
)


def _client_errors(sc: Scope) -> str:
    # per client address over every balancer and code; 0 per environment rather than nothing while no address
    # has erred (mtail creates a client's series with its first 401/403/404)
    erred, answered = sc.sum_rate(LB_CLIENT_ERRORS, by="env, client"), sc.sum_rate(LB_RESPONSES, by="env")
    return f"({erred}\n or on (env) {answered} * 0) * 60"


CLIENT_ERRORS = Signal(
    "client_errors",
    "401, 403 and 404 answers of the load balancer per minute, per environment and client address",
    _client_errors,
    "security.client_errors_per_minute",
)

# ----- state signals: their alerts compare them with a constant (`== 0`, `> 0`) -----

TARGET_UP = Signal("target_up", "1 while Prometheus scrapes a target, 0 when it cannot", lambda sc: sc.sel("up"))
REDIS_UP = Signal("redis_up", "1 while the Redis exporter reaches Redis", lambda sc: sc.sel("redis_up"))
MONGODB_UP = Signal("mongodb_up", "1 while the MongoDB exporter reaches MongoDB", lambda sc: sc.sel("mongodb_up"))
RULE_EVALUATION_FAILURES = Signal(
    "rule_evaluation_failures",
    "failed rule evaluations in the last 5 minutes, per Prometheus",
    lambda sc: f"sum by (env, instance) (increase({sc.sel('prometheus_rule_evaluation_failures_total')}[{sc.window}]))",
)
PROMETHEUS_CONFIG_LOADED = Signal(
    "prometheus_config_loaded",
    "1 when Prometheus' last config reload succeeded",
    lambda sc: sc.sel("prometheus_config_last_reload_successful"),
)
ALERTMANAGER_CONFIG_LOADED = Signal(
    "alertmanager_config_loaded",
    "1 when Alertmanager's last reload succeeded",
    lambda sc: sc.sel("alertmanager_config_last_reload_successful"),
)
NOTIFICATION_FAILURES = Signal(
    "notification_failures",
    "failed notifications per second, per integration",
    lambda sc: notifications_failed(sc, "env, instance, integration"),
)
DISK_FILLING = Signal(
    "disk_filling",
    "bytes each mount will have free in 24 h at the trend of the last 6 h",
    lambda sc: (
        f"predict_linear({sc.sel(FS_AVAIL, *REAL_FILESYSTEMS)}[{DISK_PREDICTION_HISTORY}], "
        f"{DISK_PREDICTION_HORIZON_SECONDS})"
    ),
)
PROBE_SUCCESS = Signal(
    "probe_success",
    "1 while a black-box probe succeeds, per probe and target",
    lambda sc: f"max by (env, probe, instance) ({sc.sel('probe_success')})",
)
SOLD_OUT = Signal(
    "sold_out",
    "units left of each product, 0 once sold out",
    lambda sc: f"min by (env, product) ({sc.sel('scalemart_stock_left')})",
)
INJECTION_ATTEMPTS = Signal(
    "injection_attempts",
    "requests refused for an injection shape per minute, per environment",
    lambda sc: sc.per_minute("scalemart_injection_attempts_total", by="env"),
)

SIGNALS: tuple[Signal, ...] = (
    ERROR_RATIO,
    LATENCY_P95,
    LATENCY_P99,
    ACTIVE_USERS,
    CPU_USAGE,
    MEMORY_USAGE,
    DISK_USED,
    REDIS_MEMORY,
    TSDB_RETENTION,
    OPEN_CONNECTIONS,
    CACHE_HIT_RATIO,
    QUEUE_LENGTH,
    HEARTBEAT_AGE,
    STOCK_LEFT,
    BACKUP_AGE,
    LOGIN_FAILURES,
    RATE_LIMITED,
    BALANCER_RATE_LIMITED,
    TOKEN_FAILURES,
    OVERSIZED_BODIES,
    CLIENT_ERRORS,
    INJECTION_ATTEMPTS,
    TARGET_UP,
    REDIS_UP,
    MONGODB_UP,
    RULE_EVALUATION_FAILURES,
    PROMETHEUS_CONFIG_LOADED,
    ALERTMANAGER_CONFIG_LOADED,
    NOTIFICATION_FAILURES,
    DISK_FILLING,
    PROBE_SUCCESS,
    SOLD_OUT,
)
