"""Alerts & Security: what is firing, whether alerting itself works, and signs of abuse."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules.thresholds import Thresholds
from dashboards import promql as q
from dashboards.common import Layout, dashboard, stat, table, target, timeseries

TITLE = "Alerts & Security"
UID = "scalemart-alerts-security"


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.row("Alerts")
    lay.add(stat("Critical firing", 'sum(ALERTS{alertstate="firing", severity="critical"}) or vector(0)'), w=6, h=5)
    lay.add(stat("Warning firing", 'sum(ALERTS{alertstate="firing", severity="warning"}) or vector(0)'), w=6, h=5)
    lay.add(stat("Watchdog", 'sum(ALERTS{alertname="Watchdog", alertstate="firing"}) or vector(0)',
                 description="1 while the alerting pipeline evaluates rules; 0 means rules are not running."),
            w=6, h=5)
    lay.add(stat("Notification failures (1h)",
                 f"sum(increase({q.sel('alertmanager_notifications_failed_total')}[1h]))"), w=6, h=5)
    lay.add(table("Firing alerts", 'ALERTS{alertstate="firing", alertname!="Watchdog"}'), w=24)
    lay.add(timeseries("Notifications by integration", [
        target(q.sum_rate("alertmanager_notifications_total", by="integration"), "sent {{integration}}", "A"),
        target(q.sum_rate("alertmanager_notifications_failed_total", by="integration"), "failed {{integration}}",
               "B")], "ops"))
    lay.add(timeseries("Rule evaluation failures", [target(
        q.sum_rate("prometheus_rule_evaluation_failures_total", by="instance"), "{{instance}}")], "ops"))
    lay.add(timeseries("Backup age", [target(
        f"({q.age_seconds('scalemart_backup_last_success_timestamp_seconds', 'kind')}) / 3600", "{{kind}}")],
        "h", t.backups.last_success_age_hours))
    lay.row("Security")
    lay.add(timeseries("Failed logins per minute", [target(q.per_minute("scalemart_login_failures_total"),
                                                           "failed logins")], "short",
                       t.security.login_failures_per_minute))
    lay.add(timeseries("Rate-limited requests per minute", [target(q.per_minute("scalemart_rate_limited_total"),
                                                                   "rejected")], "short",
                       t.security.rate_limited_per_minute))
    lay.add(timeseries("4xx by route", [target(q.sum_rate("scalemart_http_requests_total", 'status=~"4.."',
                                                          by="route, status"), "{{route}} {{status}}")], "reqps"))
    return dashboard(TITLE, UID, lay, "Firing alerts, health of the alerting pipeline, failed logins and abuse.",
                     ["alerts", "security"])
