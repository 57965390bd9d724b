"""The "no No-data panel" check: every PromQL expression in every dashboard panel and alert rule must
parse on a real Prometheus and refer only to metric names its targets expose.

    from alert_rules import coverage
    report = coverage.check("http://127.0.0.1:9090")            # environment: everything must be there
    report = coverage.check(url, environment_only=coverage.ENVIRONMENT_ONLY)   # control machine
    assert report.ok, report.text()

Used by tests/observability/test_no_data.py against a Prometheus scraping the real app, worker and
exporters on loopback, and usable as is against an environment's Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from alert_rules import thresholds as thresholds_mod
from alert_rules.rules import DEFAULT_RUNBOOK_BASE, rule_groups

# Grafana variables have no meaning to Prometheus; give them the value a dashboard would send.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "${env}": ".*", "$env": ".*"}

# Metric names that the control machine cannot produce, each with the reason; the environment test
# (tests/infra, against the environment's Prometheus) checks them with `environment_only={}`. Empty
# today: every exporter and FerretDB's own metrics run on loopback in tests/observability/test_no_data.py.
# Keep an entry only while test_no_data proves the name is really absent there.
# The SLO inputs too: mtail over nginx's log (job `lb-log`) and the blackbox exporter (job `blackbox`) run there.
ENVIRONMENT_ONLY: dict[str, str] = {}

# Panels that rightly show nothing on a healthy shop; any other empty panel is a defect (the no-data
# check on loopback, and the browser test on dev after a load).
EMPTY_WHEN_HEALTHY = {
    "5xx by route": "no request failed with a 5xx",
    "Firing alerts": "only the Watchdog fires, and the table hides it",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and durations removed)."""
    names = set(_NAME_MATCHER.findall(expr))
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    for m in _IDENT.finditer(s):
        token = m.group(0)
        prev = s[m.start() - 1] if m.start() else " "
        if token.lower() in _KEYWORDS or prev.isdigit() or prev == ".":
            continue
        if s[m.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(token)
    return names


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def has_data(data: dict[str, Any]) -> bool:
    """A Prometheus query answer (`data` of /api/v1/query or query_range) holds a number: a series of
    NaN only (0/0 on fresh counters) shows as "No data" on a panel too."""
    if data["resultType"] in ("scalar", "string"):
        return str(data["result"][1]) != "NaN"
    return any(v[1] != "NaN" for r in data["result"] for v in ([r["value"]] if "value" in r else r["values"]))


@dataclass(frozen=True)
class Item:
    where: str  # "dashboard 'X' panel 'Y' [A]" or "rule 'Name' (severity)"
    expr: str
    panel: bool


def items(thresholds_path: str | Path | None = None) -> list[Item]:
    """Every expression of every dashboard panel, dashboard variable and alert rule."""
    from dashboards import panel_expressions, render_all

    out: list[Item] = []
    for _uid, data in render_all(thresholds_path).items():
        title = data["title"]
        for panel, ref, expr in panel_expressions(data):
            out.append(Item(f"dashboard '{title}' panel '{panel}' [{ref}]", expr, True))
        for var in data.get("templating", {}).get("list", []):
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", str(var.get("query") or ""))
            if m:
                out.append(Item(f"dashboard '{title}' variable '{var['name']}'", f"count by ({m[2]}) ({m[1]})", False))
    t = thresholds_mod.load(thresholds_path)
    for content in rule_groups(t, DEFAULT_RUNBOOK_BASE).values():
        for group in content["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    slo = rule.get("labels", {}).get("slo")  # the SLO records carry theirs; the analytics ones none
                    out.append(Item(f"record '{rule['record']}'" + (f" ({slo})" if slo else ""), rule["expr"], False))
                else:
                    out.append(Item(f"rule '{rule['alert']}' ({rule['labels']['severity']})", rule["expr"], False))
    return out


@dataclass
class Report:
    exposed: set[str]
    parse_errors: dict[str, str] = field(default_factory=dict)
    missing: dict[str, set[str]] = field(default_factory=dict)
    environment_only: dict[str, set[str]] = field(default_factory=dict)
    empty_panels: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.parse_errors and not self.missing

    def text(self) -> str:
        lines = [f"{self.checked} expressions checked against {len(self.exposed)} exposed metric names"]
        for where, err in sorted(self.parse_errors.items()):
            lines.append(f"FAIL {where}: Prometheus rejects the expression: {err}")
        for where, names in sorted(self.missing.items()):
            lines.append(f"FAIL {where}: no target exposes {', '.join(sorted(names))}")
        for where, names in sorted(self.environment_only.items()):
            lines.append(f"ENV  {where}: {', '.join(sorted(names))} checked in the environment test instead")
        for where in self.empty_panels:
            lines.append(f"INFO {where}: no series right now")
        return "\n".join(lines)


def _get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    try:
        body = r.json()
    except ValueError:
        raise RuntimeError(f"Prometheus answered {r.status_code} to {path} without JSON: {r.text[:200]}") from None
    return body  # type: ignore[no-any-return]


def check(
    prometheus_url: str, environment_only: dict[str, str] | None = None, selected: Iterable[Item] | None = None
) -> Report:
    env_only = environment_only if environment_only is not None else {}
    with httpx.Client(base_url=prometheus_url.rstrip("/"), timeout=30) as client:
        names = _get(client, "/api/v1/label/__name__/values")
        if names.get("status") != "success":
            raise RuntimeError(f"cannot list metric names from {prometheus_url}: {names}")
        report = Report(exposed=set(names["data"]))
        for item in selected if selected is not None else items():
            report.checked += 1
            expr = substitute(item.expr)
            body = _get(client, "/api/v1/query", query=expr)
            if body.get("status") != "success":
                report.parse_errors[item.where] = f"{body.get('errorType')}: {body.get('error')}"
                continue
            absent = metric_names(expr) - report.exposed
            deferred = {n for n in absent if n in env_only}
            if absent - deferred:
                report.missing[item.where] = absent - deferred
            if deferred:
                report.environment_only[item.where] = deferred
            if item.panel and not absent and not body["data"]["result"]:
                report.empty_panels.append(item.where)
    return report
