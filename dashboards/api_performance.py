"""API Performance: traffic, errors and latency per route and instance, plus the read cache."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules import signals as s
from alert_rules.thresholds import Thresholds
from dashboards.common import Layout, dashboard, target, timeseries, watch

TITLE = "API Performance"
UID = "scalemart-api-performance"
q = s.PANELS


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.row("Traffic and errors")
    lay.add(
        timeseries(
            "Requests by route", [target(s.http_requests(q, by="route, method"), "{{method}} {{route}}")], "reqps"
        )
    )
    lay.add(watch("Error ratio by instance", s.ERROR_RATIO, t, "percentunit", "{{instance}}"))
    lay.add(
        timeseries(
            "5xx by route",
            [target(s.http_requests(q, s.SERVER_ERROR, by="route, status"), "{{route}} {{status}}")],
            "reqps",
        )
    )
    in_progress = q.sel("scalemart_http_requests_in_progress")
    lay.add(timeseries("Requests in progress", [target(f"sum by (method) ({in_progress})", "{{method}}")], "short"))
    lay.row("Latency")
    lay.add(watch("Latency p95 vs SLO", s.LATENCY_P95, t, "s", "{{instance}}"))
    lay.add(watch("Response time p99", s.LATENCY_P99, t, "s", "{{instance}}"))
    lay.add(
        timeseries(
            "Latency p50 / p95 / p99",
            [
                target(s.http_latency(q, 0.5), "p50", "A"),
                target(s.http_latency(q, 0.95), "p95", "B"),
                target(s.http_latency(q, 0.99), "p99", "C"),
            ],
            "s",
        )
    )
    lay.add(timeseries("p95 by route", [target(s.http_latency(q, 0.95, "route"), "{{route}}")], "s"))
    lay.row("Cache")
    lay.add(watch("Cache hit ratio", s.CACHE_HIT_RATIO, t, "percentunit", "{{env}}"))
    lay.add(
        timeseries(
            "Cache reads",
            [target(s.cache_reads(q, hits=True), "hits", "A"), target(s.cache_reads(q, hits=False), "misses", "B")],
            "ops",
        )
    )
    return dashboard(TITLE, UID, lay, "Per-route and per-instance speed and errors of the ScaleMart API.", ["api"])
