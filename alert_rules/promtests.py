"""promtool unit tests generated from the same alert table and thresholds as the rules.

For every tiered alert and every tier: a case just above the tier (that tier and the milder ones
fire, with labels and rendered annotations asserted) and a case just below it (only the milder
tiers fire; nothing at all below the mildest). For every state alert: a case that fires and one
where the condition holds one minute less than `for` (must not fire). The Watchdog fires always.
"""

from __future__ import annotations

import math
import re
from typing import Any

from alert_rules import slo
from alert_rules.rules import (
    DEFAULT_RUNBOOK_BASE,
    FORMATS,
    WATCHDOG,
    Alert,
    _num,
    alerts,
    minutes_of,
    render_description,
)
from alert_rules.thresholds import Threshold, Thresholds

_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.(\w+)|value)\s*(\|\s*([^}]+?))?\s*\}\}")


def _go_value(v: float) -> str:
    # Go's %v for float64: shortest form, integral values without a fraction
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def render(template: str, labels: dict[str, str], value: float) -> str:
    """Render the small subset of Go templating our annotations use."""
    pipes = {pipe: fn for pipe, fn, _ in FORMATS.values()}
    pipes['printf "%.3f"'] = lambda v: f"{v:.3f}"

    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels[m.group(2)]
        pipe = m.group(4)
        if pipe is None:
            return _go_value(value)
        return pipes[pipe.strip()](value)

    return _TEMPLATE.sub(sub, template)


def _probe_values(th: Threshold) -> list[tuple[float, list[str]]]:
    """(value of the watched expression, severities expected to fire) for a tiered key."""
    tiers = th.tiers()
    sign = -1 if th.low_is_bad else 1
    cases: list[tuple[float, list[str]]] = []
    for i, (severity, t) in enumerate(tiers):
        milder = [s for s, _ in tiers[:i]]
        nxt = tiers[i + 1][1] if i + 1 < len(tiers) else None
        # just past the tier, but not past the next one
        if nxt is not None:
            above = t + (nxt - t) / 2
        elif th.low_is_bad:
            above = t / 2
        elif th.ratio:
            above = min(t * 1.5, t + (1 - t) / 2)
        else:
            above = t * 1.5 if t else 1
        if th.integer:
            above = math.floor(above) if th.low_is_bad else math.ceil(above)
            if above == t:
                above = t + sign
        # just short of the tier: for whole units the boundary itself (the comparison is strict)
        below = t if th.integer else t - sign * max(abs(t) * 0.02, 1e-3)
        if th.ratio:
            below = min(max(below, 0.0), 1.0)
        cases.append((above, milder + [severity]))
        cases.append((below, milder))
    return cases


def _exp_alert(
    alert: Alert, th: Threshold, severity: str, labels: dict[str, str], value: float, runbook_base: str
) -> dict[str, Any]:
    desc = render(render_description(alert, th, None if alert.is_state() else severity), labels, value)
    return {
        "exp_labels": {**labels, "severity": severity},
        "exp_annotations": {
            "summary": alert.summary,
            "description": desc,
            "runbook_url": f"{runbook_base}/{alert.name}.md",
        },
    }


def _group(
    series: list[tuple[str, str]], alertname: str, minutes: int, exp: list[dict[str, Any]], comment: str
) -> dict[str, Any]:
    return {
        "name": comment,
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [{"eval_time": f"{minutes}m", "alertname": alertname, "exp_alerts": exp}],
    }


# The value a state alert's expression has when it fires, as the test series produce it.
_STATE_VALUE = {
    "PrometheusRuleEvaluationFailures": 5.0,
    "AlertmanagerNotificationsFailing": 1 / 60,
    "ScaleMartInjectionAttempts": 1.0,  # one a minute
    # 96 GB free at the evaluation, falling 100 MB a minute: 24 h on, 144 GB less
    "HostDiskFillingUp": 96e9 - 1e8 / 60 * 86400,
}


def test_groups(t: Thresholds, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = [
        {
            "name": "Watchdog always fires",
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [
                {
                    "eval_time": "1m",
                    "alertname": WATCHDOG,
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "info"},
                            "exp_annotations": {
                                "summary": "Always firing: proves the alerting pipeline is alive.",
                                "description": "This alert fires all the time on purpose. If the heartbeat receiver "
                                "stops getting it, Prometheus, rule evaluation or Alertmanager is broken.",
                                "runbook_url": f"{runbook_base}/{WATCHDOG}.md",
                            },
                        }
                    ],
                }
            ],
        }
    ]
    for alert in alerts():
        th = t[alert.key]
        minutes = minutes_of(th) + 10
        if alert.is_state():
            assert alert.fire is not None and alert.quiet is not None and th.severity is not None
            f = minutes_of(th)
            value = _STATE_VALUE.get(alert.name, 0.0)
            groups.append(
                _group(
                    alert.fire(f),
                    alert.name,
                    f + 10,
                    [_exp_alert(alert, th, th.severity, alert.labels, value, runbook_base)],
                    f"{alert.name} fires after {th.for_}",
                )
            )
            groups.append(
                _group(
                    alert.quiet(f),
                    alert.name,
                    f + 10,
                    [],
                    f"{alert.name} stays quiet when the condition lasts less than {th.for_}",
                )
            )
            continue
        assert alert.series is not None
        _, py_fmt, _ = FORMATS[alert.fmt]
        for value, severities in _probe_values(th):
            exp = [_exp_alert(alert, th, s, alert.labels, value, runbook_base) for s in severities]
            what = f"fires {'+'.join(severities)}" if severities else "stays quiet"
            groups.append(
                _group(
                    alert.series(value, minutes),
                    alert.name,
                    minutes,
                    exp,
                    f"{alert.name} {what} at {_num(value)} ({py_fmt(value)})",
                )
            )
    return groups


def test_file(rule_files: list[str], t: Thresholds, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, Any]:
    tests = [*test_groups(t, runbook_base), *slo.test_groups(t, runbook_base)]
    return {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}
