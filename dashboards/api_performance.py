"""API Performance: traffic, errors and latency per route and instance, plus the read cache."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules.thresholds import Thresholds
from dashboards import promql as q
from dashboards.common import Layout, dashboard, target, timeseries

TITLE = "API Performance"
UID = "scalemart-api-performance"


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.row("Traffic and errors")
    lay.add(timeseries("Requests by route", [target(q.sum_rate("scalemart_http_requests_total", by="route, method"),
                                                     "{{method}} {{route}}")], "reqps"))
    lay.add(timeseries("Error ratio by instance", [target(q.error_ratio("instance"), "{{instance}}")],
                       "percentunit", t.api.error_ratio))
    lay.add(timeseries("5xx by route", [target(q.sum_rate("scalemart_http_requests_total", 'status=~"5.."',
                                                          by="route, status"), "{{route}} {{status}}")], "reqps"))
    in_progress = q.sel("scalemart_http_requests_in_progress")
    lay.add(timeseries("Requests in progress", [target(f"sum by (method) ({in_progress})", "{{method}}")], "short"))
    lay.row("Latency")
    lay.add(timeseries("Latency p95 vs SLO", [target(q.latency_quantile(0.95, "instance"), "{{instance}}")], "s",
                       t.api.latency_p95_seconds))
    lay.add(timeseries("Response time p99", [target(q.latency_quantile(0.99, "instance"), "{{instance}}")], "s",
                       t.api.response_time_p99_seconds))
    lay.add(timeseries("Latency p50 / p95 / p99", [target(q.latency_quantile(0.5), "p50", "A"),
                                                   target(q.latency_quantile(0.95), "p95", "B"),
                                                   target(q.latency_quantile(0.99), "p99", "C")], "s"))
    lay.add(timeseries("p95 by route", [target(q.latency_quantile(0.95, "route"), "{{route}}")], "s"))
    lay.row("Cache")
    lay.add(timeseries("Cache hit ratio", [target(q.cache_hit_ratio(), "hit ratio")], "percentunit",
                       t.datastores.cache_hit_ratio))
    lay.add(timeseries("Cache reads", [target(q.sum_rate("scalemart_cache_hits_total"), "hits", "A"),
                                       target(q.sum_rate("scalemart_cache_misses_total"), "misses", "B")], "ops"))
    return dashboard(TITLE, UID, lay, "Per-route and per-instance speed and errors of the ScaleMart API.", ["api"])
