"""ScaleMart Overview: is the shop up, fast and selling? The first screen during a sale."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules.thresholds import Thresholds
from dashboards import promql as q
from dashboards.common import Layout, dashboard, stat, target, timeseries

TITLE = "ScaleMart Overview"
UID = "scalemart-overview"


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.add(stat("Requests per second", q.sum_rate("scalemart_http_requests_total"), "reqps"), w=4, h=5)
    lay.add(stat("Error ratio (5xx)", q.error_ratio(), "percentunit", t.api.error_ratio), w=4, h=5)
    lay.add(stat("Latency p95", q.latency_quantile(0.95), "s", t.api.latency_p95_seconds), w=4, h=5)
    lay.add(stat("Active users (5 min)", f"max({q.sel('scalemart_active_users')})", "short",
                 t.api.concurrent_users), w=4, h=5)
    lay.add(stat("Orders per minute", q.per_minute("scalemart_orders_total"), "short"), w=4, h=5)
    lay.add(stat("Firing alerts", 'sum(ALERTS{alertstate="firing", alertname!="Watchdog"}) or vector(0)', "short",
                 description="Alerts firing now, Watchdog excluded. Details on Alerts & Security."), w=4, h=5)
    lay.add(timeseries("Requests by status", [target(q.sum_rate("scalemart_http_requests_total", by="status"),
                                                      "{{status}}")], "reqps"))
    lay.add(timeseries("Latency p95 vs SLO", [target(q.latency_quantile(0.95, "instance"), "{{instance}}")], "s",
                       t.api.latency_p95_seconds))
    lay.add(timeseries("Scrape targets up", [target(f"sum by (job) ({q.sel('up')})", "{{job}}")], "short",
                       description="Targets answering Prometheus, per job."))
    lay.add(timeseries("Release per instance", [target(q.sel("scalemart_app_info"), "{{instance}} {{version}}")],
                       "short", description="scalemart_app_info: which release each instance runs."))
    return dashboard(TITLE, UID, lay, "Health, speed and sales of the shop at a glance.", ["overview"])
