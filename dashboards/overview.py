"""ScaleMart Overview: is the shop up, fast and selling? The first screen during a sale."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules import signals as s
from alert_rules.thresholds import Thresholds
from dashboards.common import Layout, dashboard, stat, target, timeseries, watch, worst

TITLE = "ScaleMart Overview"
UID = "scalemart-overview"
q = s.PANELS


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.add(stat("Requests per second", s.http_requests(q), "reqps"), w=4, h=5)
    lay.add(
        worst(
            "Error ratio (5xx)",
            s.ERROR_RATIO,
            t,
            "percentunit",
            "The instance answering the most 5xx over 5m, as ScaleMartHighErrorRate sees it.",
        ),
        w=4,
        h=5,
    )
    lay.add(
        worst(
            "Latency p95",
            s.LATENCY_P95,
            t,
            "s",
            "The slowest instance's p95 over 5m, as ScaleMartLatencySLOBreach sees it.",
        ),
        w=4,
        h=5,
    )
    lay.add(worst("Active users (5 min)", s.ACTIVE_USERS, t, "short"), w=4, h=5)
    lay.add(stat("Orders per minute", q.per_minute("scalemart_orders_total"), "short"), w=4, h=5)
    lay.add(
        stat(
            "Firing alerts",
            'sum(ALERTS{alertstate="firing", alertname!="Watchdog"}) or vector(0)',
            "short",
            description="Alerts firing now, Watchdog excluded. Details on Alerts & Security.",
        ),
        w=4,
        h=5,
    )
    lay.add(timeseries("Requests by status", [target(s.http_requests(q, by="status"), "{{status}}")], "reqps"))
    lay.add(watch("Latency p95 vs SLO", s.LATENCY_P95, t, "s", "{{instance}}"))
    lay.add(
        timeseries(
            "Scrape targets up",
            [target(f"sum by (job) ({s.TARGET_UP.panel()})", "{{job}}")],
            "short",
            description="Targets answering Prometheus, per job.",
        )
    )
    lay.add(
        timeseries(
            "Release per instance",
            [target(q.sel("scalemart_app_info"), "{{instance}} {{version}}")],
            "short",
            description="scalemart_app_info: which release each instance runs.",
        )
    )
    return dashboard(TITLE, UID, lay, "Health, speed and sales of the shop at a glance.", ["overview"])
