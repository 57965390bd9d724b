"""Alerts & Security: what is firing, whether alerting itself works, and signs of abuse."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules import signals as s
from alert_rules.thresholds import Thresholds
from dashboards.common import Layout, dashboard, stat, table, target, timeseries, watch

TITLE = "Alerts & Security"
UID = "scalemart-alerts-security"
q = s.PANELS


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.row("Alerts")
    lay.add(stat("Critical firing", 'sum(ALERTS{alertstate="firing", severity="critical"}) or vector(0)'), w=6, h=5)
    lay.add(stat("Warning firing", 'sum(ALERTS{alertstate="firing", severity="warning"}) or vector(0)'), w=6, h=5)
    lay.add(
        stat(
            "Watchdog",
            'sum(ALERTS{alertname="Watchdog", alertstate="firing"}) or vector(0)',
            description="1 while the alerting pipeline evaluates rules; 0 means rules are not running.",
        ),
        w=6,
        h=5,
    )
    lay.add(stat("Notification failures (1h)", s.notifications_failed_over(q, "1h")), w=6, h=5)
    lay.add(table("Firing alerts", 'ALERTS{alertstate="firing", alertname!="Watchdog"}'), w=24)
    lay.add(
        timeseries(
            "Notifications by integration",
            [
                target(q.sum_rate("alertmanager_notifications_total", by="integration"), "sent {{integration}}", "A"),
                target(s.notifications_failed(q, by="integration"), "failed {{integration}}", "B"),
            ],
            "ops",
        )
    )
    lay.add(
        timeseries(
            "Rule evaluation failures",
            [target(s.RULE_EVALUATION_FAILURES.panel(), "{{instance}}")],
            "short",
            description="Failed rule evaluations in the last 5 minutes; "
            "PrometheusRuleEvaluationFailures fires above 0.",
        )
    )
    lay.add(watch("Backup age", s.BACKUP_AGE, t, "h", "{{kind}}"))
    lay.row("Security")
    lay.add(watch("Failed logins per minute", s.LOGIN_FAILURES, t, "short", "failed logins"))
    lay.add(watch("Rate-limited requests per minute", s.RATE_LIMITED, t, "short", "rejected"))
    lay.add(
        watch(
            "Turned away by the balancer per minute",
            s.BALANCER_RATE_LIMITED,
            t,
            "short",
            "429 at the balancer",
            description="nginx's per-address limit (limit_req) answering 429 before the app sees the request; "
            "ScaleMartBalancerRateLimited fires above the line.",
        )
    )
    lay.add(
        watch(
            "Buyer token refusals per minute",
            s.TOKEN_FAILURES,
            t,
            "short",
            "{{reason}}",
            description="Buyer requests refused with 401 for their token, by reason (missing, malformed, "
            "expired, bad_signature, bad_claims); ScaleMartTokenFailureBurst fires for a reason "
            "above the line.",
        )
    )
    lay.add(
        watch(
            "401/403/404 per client address per minute",
            s.CLIENT_ERRORS,
            t,
            "short",
            "{{client}}",
            description="The load balancer's 401, 403 and 404 answers to each client address (mtail; only "
            "addresses that got one have a line); ScaleMartClientScanning fires for an address "
            "above the line.",
        )
    )
    injections = t["security.injection_attempts"]
    lay.add(
        timeseries(
            "Injection attempts per minute",
            [target(s.INJECTION_ATTEMPTS.panel(), "refused")],
            "short",
            description="Requests refused for a MongoDB operator or another injection shape in their "
            f"input; ScaleMartInjectionAttempts fires above 0 for {injections.for_}.",
        )
    )
    lay.add(
        watch(
            "Oversized bodies per minute",
            s.OVERSIZED_BODIES,
            t,
            "short",
            "413",
            description="Requests refused with 413 for a body over SCALEMART_MAX_BODY_BYTES; "
            "ScaleMartOversizedBodies fires above the line.",
        )
    )
    lay.add(
        timeseries(
            "4xx by route",
            [target(s.http_requests(q, 'status=~"4.."', by="route, status"), "{{route}} {{status}}")],
            "reqps",
        )
    )
    return dashboard(
        TITLE,
        UID,
        lay,
        "Firing alerts, health of the alerting pipeline, failed logins and abuse.",
        ["alerts", "security"],
    )
