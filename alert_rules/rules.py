"""Prometheus alert rules for ScaleMart, generated from the thresholds file.

Each alert is declared once, with the PromQL it watches and how to produce test input for it, so the
rule files and their promtool unit tests (alert_rules/promtests.py) always agree with thresholds.yml.
Tiered keys (warning/critical) become one alert name with one rule per severity: Alertmanager's
inhibition then keeps only the most severe one notifying.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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

# A series description for promtool: (metric{labels}, values).
Series = tuple[str, str]


def _sel(metric: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def _num(v: float) -> str:
    # promtool's series notation wants plain decimals
    text = f"{v:.10f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


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
    """One alert name. Tiered alerts compare `lhs` with each tier; state alerts use `expr` as is."""

    name: str
    group: str
    key: str
    summary: str
    # str.format fields: {value} (the rendered $value), {threshold}, {for_}; Go template {{ }} kept as is
    description: str
    lhs: str = ""
    fmt: str = "count"
    labels: dict[str, str] = field(default_factory=dict)  # labels the alert carries in the tests
    series: Callable[[float, int], list[Series]] | None = None  # input making lhs == value
    expr: str = ""
    fire: Callable[[int], list[Series]] | None = None  # state alerts: input that must fire
    quiet: Callable[[int], list[Series]] | None = None  # ... and one that must not

    def is_state(self) -> bool:
        return not self.lhs


def ferretdb_open_connections(matchers: str = "") -> str:
    """Open client connections of each FerretDB process: accepted minus closed.

    FerretDB 1.24 has no open-connections gauge. `ferretdb_client_accepts_total{error="0"}` counts
    accepted connections (error="1" are failed accept() calls, never connections) and every accepted
    connection observes `ferretdb_client_duration_seconds` once when it closes, whatever its error
    label. Both counters live in the same process and reset together, so their difference is a gauge:
    it must not be wrapped in rate(). The duration series only appear once a connection has closed:
    until then closed = 0 (the `or ... * 0`), rather than the whole expression being empty.
    `matchers` (e.g. the dashboards' env selector) goes into every selector.
    """
    def sel(metric: str, extra: str = "") -> str:
        inner = ",".join(m for m in (matchers, extra) if m)
        return f"{metric}{{{inner}}}" if inner else metric

    accepted = sel("ferretdb_client_accepts_total", 'error="0"')
    return (f"sum by (env, instance) ({accepted})\n"
            f"- sum by (env, instance) ({sel('ferretdb_client_duration_seconds_count')} or {accepted} * 0)")


def _open_connections_series(v: float, minutes: int) -> list[Series]:
    # a busy server: 15 connections accepted and 15 closed per minute (some with an error), v open
    # throughout; failed accepts grow too and must not count
    return [
        (_sel("ferretdb_client_accepts_total", {**FERRETDB, "error": "0"}), f"{_num(v + 100)}+15x{minutes}"),
        (_sel("ferretdb_client_accepts_total", {**FERRETDB, "error": "1"}), f"0+50x{minutes}"),
        (_sel("ferretdb_client_duration_seconds_count", {**FERRETDB, "error": "0"}), f"80+10x{minutes}"),
        (_sel("ferretdb_client_duration_seconds_count", {**FERRETDB, "error": "1"}), f"20+5x{minutes}"),
    ]


def _range(_: Threshold) -> str:
    return "5m"


def _per_instance_ratio(metric: str, bad: str) -> str:
    return (f"sum by (env, instance) (rate({metric}{{{bad}}}[5m]))\n"
            f"/ sum by (env, instance) (rate({metric}[5m]))")


def _quantile(q: float) -> str:
    return (f"histogram_quantile({q}, sum by (env, instance, le) "
            f"(rate(scalemart_http_request_duration_seconds_bucket[5m])))")


def _state_flip(metric: str, labels: dict[str, str], good: float, bad: float, for_min: int, fire: bool,
                minutes: int) -> list[Series]:
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
        A("ScaleMartHighErrorRate", "scalemart-api", "api.error_ratio",
          "ScaleMart API is answering with server errors.",
          "{{{{ $labels.instance }}}} answered {value} of requests with a 5xx status over 5m "
          "(threshold {threshold}).",
          lhs=_per_instance_ratio("scalemart_http_requests_total", 'status=~"5.."'), fmt="percent",
          labels={"env": "test", "instance": APP["instance"]},
          series=lambda v, m: [
              counter("scalemart_http_requests_total", {**APP, "route": "/api/buy", "method": "POST", "status": "200"},
                      600 * (1 - v), m),
              counter("scalemart_http_requests_total", {**APP, "route": "/api/buy", "method": "POST", "status": "500"},
                      600 * v, m)]),
        A("ScaleMartLatencySLOBreach", "scalemart-api", "api.latency_p95_seconds",
          "ScaleMart API p95 latency is above the SLO.",
          "p95 latency on {{{{ $labels.instance }}}} is {value} over 5m (SLO {threshold}).",
          lhs=_quantile(0.95), fmt="duration", labels={"env": "test", "instance": APP["instance"]},
          series=lambda v, m: histogram("scalemart_http_request_duration_seconds",
                                        {**APP, "route": "/api/buy", "method": "POST"}, 0.95, v, m)),
        A("ScaleMartSlowResponses", "scalemart-api", "api.response_time_p99_seconds",
          "ScaleMart API responses are slow.",
          "p99 response time on {{{{ $labels.instance }}}} is {value} over 5m (threshold {threshold}).",
          lhs=_quantile(0.99), fmt="duration", labels={"env": "test", "instance": APP["instance"]},
          series=lambda v, m: histogram("scalemart_http_request_duration_seconds",
                                        {**APP, "route": "/api/buy", "method": "POST"}, 0.99, v, m)),
        A("ScaleMartConcurrentUsersHigh", "scalemart-api", "api.concurrent_users",
          "More shoppers are active than the shop is sized for.",
          "{value} distinct users were active in the last 5 minutes in {{{{ $labels.env }}}} "
          "(threshold {threshold}).",
          lhs="max by (env) (scalemart_active_users)", fmt="count", labels={"env": "test"},
          series=lambda v, m: [gauge("scalemart_active_users", APP, v, m)]),
        A("HostHighCpuUsage", "scalemart-hosts", "hosts.cpu_ratio",
          "A host's CPUs are nearly saturated.",
          "CPU usage on {{{{ $labels.instance }}}} is {value} averaged over all cores for 5m "
          "(threshold {threshold}).",
          lhs='1 - avg by (env, instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))', fmt="percent",
          labels={"env": "test", "instance": NODE["instance"]},
          series=lambda v, m: [counter("node_cpu_seconds_total", {**NODE, "cpu": "0", "mode": "idle"},
                                       60 * (1 - v), m)]),
        A("HostHighMemoryUsage", "scalemart-hosts", "hosts.memory_ratio",
          "A host is running out of memory.",
          "Memory in use on {{{{ $labels.instance }}}} is {value} (threshold {threshold}).",
          lhs="1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", fmt="percent", labels=NODE,
          series=lambda v, m: [gauge("node_memory_MemTotal_bytes", NODE, 8e9, m),
                               gauge("node_memory_MemAvailable_bytes", NODE, 8e9 * (1 - v), m)]),
        A("PrometheusTargetDown", "scalemart-hosts", "hosts.target_down",
          "Prometheus cannot scrape a target.",
          "{{{{ $labels.job }}}} target {{{{ $labels.instance }}}} has not answered a scrape for {for_} "
          "(up = {{{{ $value }}}}).",
          expr="up == 0", labels=NODE,
          fire=lambda f: _state_flip("up", NODE, 1, 0, f, True, f + 10),
          quiet=lambda f: _state_flip("up", NODE, 1, 0, f, False, f + 10)),
        A("RedisDown", "scalemart-datastores", "datastores.redis_down",
          "Redis is down: stock and carts are unavailable.",
          "The Redis exporter {{{{ $labels.instance }}}} cannot reach Redis (redis_up = {{{{ $value }}}}) "
          "for {for_}.",
          expr="redis_up == 0", labels=REDIS,
          fire=lambda f: _state_flip("redis_up", REDIS, 1, 0, f, True, f + 10),
          quiet=lambda f: _state_flip("redis_up", REDIS, 1, 0, f, False, f + 10)),
        A("MongoDBDown", "scalemart-datastores", "datastores.mongodb_down",
          "MongoDB is down: orders cannot be persisted.",
          "The MongoDB exporter (Percona mongodb_exporter) {{{{ $labels.instance }}}} cannot reach the order "
          "database (mongodb_up = {{{{ $value }}}}) for {for_}.",
          expr="mongodb_up == 0", labels=MONGO,
          fire=lambda f: _state_flip("mongodb_up", MONGO, 1, 0, f, True, f + 10),
          quiet=lambda f: _state_flip("mongodb_up", MONGO, 1, 0, f, False, f + 10)),
        A("MongoDBTooManyConnections", "scalemart-datastores", "datastores.database_connections",
          "MongoDB has too many open connections.",
          "FerretDB {{{{ $labels.instance }}}} holds {value} open client connections (threshold {threshold}).",
          lhs=ferretdb_open_connections(), fmt="count",
          labels={"env": "test", "instance": FERRETDB["instance"]},
          series=_open_connections_series),
        A("ScaleMartLowCacheHitRatio", "scalemart-datastores", "datastores.cache_hit_ratio",
          "The ScaleMart read cache is missing too often.",
          "Cache hit ratio in {{{{ $labels.env }}}} is {value} over 5m (threshold {threshold}).",
          lhs=("sum by (env) (rate(scalemart_cache_hits_total[5m]))\n"
               "/ (sum by (env) (rate(scalemart_cache_hits_total[5m])) "
               "+ sum by (env) (rate(scalemart_cache_misses_total[5m])))"),
          fmt="percent", labels={"env": "test"},
          series=lambda v, m: [counter("scalemart_cache_hits_total", APP, 600 * v, m),
                               counter("scalemart_cache_misses_total", APP, 600 * (1 - v), m)]),
        A("ScaleMartQueueBacklog", "scalemart-worker", "worker.queue_length",
          "The order queue is backing up.",
          "{value} orders are waiting in the queue in {{{{ $labels.env }}}} (threshold {threshold}).",
          lhs="max by (env) (scalemart_queue_length)", fmt="count", labels={"env": "test"},
          series=lambda v, m: [gauge("scalemart_queue_length", WORKER, v, m)]),
        A("ScaleMartWorkerStalled", "scalemart-worker", "worker.heartbeat_age_seconds",
          "The order worker has stopped reporting.",
          "Worker {{{{ $labels.instance }}}} last sent a heartbeat {value} ago (threshold {threshold}).",
          lhs="time() - max by (env, instance) (scalemart_worker_heartbeat_timestamp_seconds)", fmt="duration",
          labels={"env": "test", "instance": WORKER["instance"]},
          series=lambda v, m: [timestamp_aged("scalemart_worker_heartbeat_timestamp_seconds", WORKER, v, m)]),
        A("ScaleMartLowStock", "scalemart-business", "business.stock_left",
          "A product is nearly sold out.",
          "Product {{{{ $labels.product }}}} has {value} units left in {{{{ $labels.env }}}} "
          "(threshold {threshold}).",
          lhs="min by (env, product) (scalemart_stock_left)", fmt="count", labels={"env": "test", "product": "p-1"},
          series=lambda v, m: [gauge("scalemart_stock_left", {**APP, "product": "p-1"}, v, m)]),
        A("ScaleMartBackupTooOld", "scalemart-backups", "backups.last_success_age_hours",
          "The last successful backup is too old.",
          "The last successful {{{{ $labels.kind }}}} backup in {{{{ $labels.env }}}} finished {value} h ago "
          "(threshold {threshold} h).",
          lhs="(time() - max by (env, kind) (scalemart_backup_last_success_timestamp_seconds)) / 3600",
          fmt="hours", labels={"env": "test", "kind": "mongodb"},
          series=lambda v, m: [timestamp_aged("scalemart_backup_last_success_timestamp_seconds", BACKUP,
                                              v * 3600, m)]),
        A("PrometheusRuleEvaluationFailures", "scalemart-monitoring", "monitoring.rule_evaluation_failures",
          "Prometheus is failing to evaluate rules.",
          "{{{{ $labels.instance }}}} failed {{{{ $value | printf \"%.0f\" }}}} rule evaluations in the last 5m: "
          "alerts may be missing.",
          expr="sum by (env, instance) (increase(prometheus_rule_evaluation_failures_total[5m])) > 0",
          labels={"env": "test", "instance": PROM["instance"]},
          fire=lambda f: _counter_flip("prometheus_rule_evaluation_failures_total", PROM, f, True, f + 10),
          quiet=lambda f: _counter_flip("prometheus_rule_evaluation_failures_total", PROM, f, False, f + 10)),
        A("PrometheusConfigReloadFailed", "scalemart-monitoring", "monitoring.config_reload_failed",
          "Prometheus could not load its latest configuration.",
          "{{{{ $labels.instance }}}} is still running an older configuration: the last reload failed "
          "(last_reload_successful = {{{{ $value }}}}).",
          expr="prometheus_config_last_reload_successful == 0", labels=PROM,
          fire=lambda f: _state_flip("prometheus_config_last_reload_successful", PROM, 1, 0, f, True, f + 10),
          quiet=lambda f: _state_flip("prometheus_config_last_reload_successful", PROM, 1, 0, f, False, f + 10)),
        A("AlertmanagerConfigReloadFailed", "scalemart-monitoring", "monitoring.config_reload_failed",
          "Alertmanager could not load its latest configuration.",
          "{{{{ $labels.instance }}}} is still routing with an older configuration: the last reload failed "
          "(last_reload_successful = {{{{ $value }}}}).",
          expr="alertmanager_config_last_reload_successful == 0", labels=AM,
          fire=lambda f: _state_flip("alertmanager_config_last_reload_successful", AM, 1, 0, f, True, f + 10),
          quiet=lambda f: _state_flip("alertmanager_config_last_reload_successful", AM, 1, 0, f, False, f + 10)),
        A("AlertmanagerNotificationsFailing", "scalemart-monitoring", "monitoring.notification_failures",
          "Alertmanager cannot deliver notifications.",
          "{{{{ $labels.instance }}}} fails to send {{{{ $labels.integration }}}} notifications "
          "({{{{ $value | printf \"%.3f\" }}}}/s over 5m): people may not be paged.",
          expr="sum by (env, instance, integration) (rate(alertmanager_notifications_failed_total[5m])) > 0",
          labels={"env": "test", "instance": AM["instance"], "integration": "email"},
          fire=lambda f: _counter_flip("alertmanager_notifications_failed_total", {**AM, "integration": "email"},
                                       f, True, f + 10),
          quiet=lambda f: _counter_flip("alertmanager_notifications_failed_total", {**AM, "integration": "email"},
                                        f, False, f + 10)),
        A("ScaleMartLoginFailureBurst", "scalemart-security", "security.login_failures_per_minute",
          "A burst of failed logins: possible credential stuffing.",
          "{value} failed logins per minute in {{{{ $labels.env }}}} over 5m (threshold {threshold}/min).",
          lhs="sum by (env) (rate(scalemart_login_failures_total[5m])) * 60", fmt="rate", labels={"env": "test"},
          series=lambda v, m: [counter("scalemart_login_failures_total", APP, v, m)]),
        A("ScaleMartRateLimitViolations", "scalemart-security", "security.rate_limited_per_minute",
          "Clients are hitting the rate limiter.",
          "{value} requests per minute were rejected by the rate limiter in {{{{ $labels.env }}}} over 5m "
          "(threshold {threshold}/min).",
          lhs="sum by (env) (rate(scalemart_rate_limited_total[5m])) * 60", fmt="rate", labels={"env": "test"},
          series=lambda v, m: [counter("scalemart_rate_limited_total", APP, v, m)]),
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
        return [{
            "alert": alert.name, "expr": alert.expr, "for": th.for_,
            "labels": {"severity": th.severity},
            "annotations": {"summary": alert.summary, "description": render_description(alert, th, None),
                            "runbook_url": runbook},
        }]
    op = "<" if th.low_is_bad else ">"
    out = []
    for severity, value in th.tiers():
        out.append({
            "alert": alert.name,
            "expr": f"{alert.lhs}\n{op} {_num(value)}",
            "for": th.for_,
            "labels": {"severity": severity},
            "annotations": {"summary": alert.summary,
                            "description": render_description(alert, th, severity),
                            "runbook_url": runbook},
        })
    return out


def rule_groups(t: Thresholds, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, dict[str, Any]]:
    """{group name: {"groups": [...]}} ready to dump as one rule file per group."""
    groups: dict[str, list[dict[str, Any]]] = {"scalemart-monitoring": [_watchdog(runbook_base)]}
    for alert in alerts():
        groups.setdefault(alert.group, []).extend(rule_entries(alert, t[alert.key], runbook_base))
    return {name: {"groups": [{"name": name, "rules": rules}]} for name, rules in sorted(groups.items())}


def alert_names() -> list[str]:
    return sorted({a.name for a in alerts()} | {WATCHDOG})
