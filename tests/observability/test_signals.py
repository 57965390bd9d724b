"""One home for each PromQL signal (alert_rules/signals.py): a panel that shows an alert's thresholds
queries exactly what that alert watches, and no rule or dashboard module writes a signal's PromQL itself.

The panel check reads only the outputs (the rule files' expressions and the Grafana JSON), built from a
thresholds file in which no two keys share a number, so a panel's threshold steps name the one alert
they belong to.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from alert_rules import signals, thresholds
from alert_rules.coverage import metric_names
from alert_rules.rules import alerts, rule_groups
from dashboards import render_all
from tests.observability.conftest import ROOT

# `<expr>\n> 0.05`: what the rules append to the watched expression
COMPARISON = re.compile(r"\n?\s*[<>]=?\s*(-?[0-9][0-9.e+-]*)\s*$")
# what a dashboard adds to every selector (tests/observability/test_dashboards.py requires it)
PANEL_SELECTOR = 'env=~"$env"'

MODULES = [
    ROOT / "alert_rules" / "rules.py",
    ROOT / "alert_rules" / "promtests.py",
    *sorted((ROOT / "dashboards").glob("*.py")),
]
RANGE_FUNCTION = re.compile(
    r"\b(rate|irate|increase|delta|idelta|deriv|resets|changes|predict_linear"
    r"|histogram_quantile|\w+_over_time)\s*\("
)
# rules.py's promtool input builders: their first argument is the metric name of a test input series
INPUT_BUILDERS = {"counter", "gauge", "histogram", "timestamp_aged", "_state_flip", "_counter_flip", "_sel"}
# Where a signal's metric name may appear outside signals.py, and why. Nothing else is exempt.
ALLOWED = {
    "input series": "the first argument of a promtool input builder in rules.py (counter, gauge, ...): test "
    "input that makes a signal take a value, not a query",
    "alert prose": "an alert's summary and description (rules.py): text for the on-call person, naming the "
    "metric the runbook checks (redis_up = 0)",
}


def without_panel_selector(expr: str) -> str:
    return expr.replace("{" + PANEL_SELECTOR + "}", "").replace(PANEL_SELECTOR + ",", "")


def distinct_thresholds(tmp_path: Path) -> Path:
    """The shipped thresholds file with every tiered key's numbers nudged, key by key, so no two keys share a
    number: whole numbers up by the key's index, the others scaled down by it (order and ratios kept)."""
    data = yaml.safe_load(thresholds.DEFAULT_PATH.read_text())
    index = 0
    for section in data.values():
        for entry in section.values():
            tiers = [tier for tier in thresholds.TIERS if tier in entry]
            if not tiers:
                continue
            index += 1
            whole = all(isinstance(entry[tier], int) for tier in tiers)
            for tier in tiers:
                entry[tier] = entry[tier] + index if whole else round(entry[tier] * (1 - index / 1000), 6)
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def watched(thresholds_path: Path) -> dict[str, tuple[str, frozenset[float]]]:
    """{tiered alert: (its expression with the comparison stripped, the numbers its tiers compare with)}"""
    tiered = {a.name for a in alerts() if not a.is_state()}
    found: dict[str, tuple[set[str], set[float]]] = {}
    for content in rule_groups(thresholds.load(thresholds_path)).values():
        for rule in content["groups"][0]["rules"]:
            if rule.get("alert") not in tiered:
                continue
            m = COMPARISON.search(rule["expr"])
            assert m, f"{rule['alert']}: no comparison with a number at the end of {rule['expr']!r}"
            exprs, values = found.setdefault(rule["alert"], (set(), set()))
            exprs.add(rule["expr"][: m.start()])
            values.add(float(m.group(1)))
    for name, (exprs, _) in found.items():
        assert len(exprs) == 1, f"{name}: its tiers watch different expressions: {exprs}"
    return {name: (next(iter(exprs)), frozenset(values)) for name, (exprs, values) in found.items()}


def threshold_panels(dashboards: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any], frozenset[float]]]:
    """(where, panel, the numbers of its threshold steps) of every panel with threshold steps."""
    out = []
    for data in dashboards.values():
        for p in data["panels"]:
            steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
            values = frozenset(float(s["value"]) for s in steps if s["value"] is not None)
            if values:
                out.append((f"{data['title']} / {p['title']}", p, values))
    return out


def mismatches(
    dashboards: dict[str, dict[str, Any]],
    watching: dict[str, tuple[str, frozenset[float]]],
) -> tuple[list[str], set[str]]:
    """Panels that show an alert's thresholds but query something else, and the alerts that have a panel.

    A threshold line (time series) or a bar gauge must query exactly the alert's expression, the
    dashboards' env selector aside; a stat coloured by an alert's thresholds shows one number and
    may aggregate over it (the worst instance, the products below the line)."""
    by_values = {values: name for name, (_, values) in watching.items()}
    problems, shown = [], set()
    for where, p, values in threshold_panels(dashboards):
        name = by_values.get(values)
        if name is None:
            problems.append(f"{where}: its thresholds {sorted(values)} are no alert's")
            continue
        shown.add(name)
        expr = watching[name][0]
        queried = [without_panel_selector(t["expr"]) for t in p["targets"]]
        line = p["fieldConfig"]["defaults"].get("custom", {}).get("thresholdsStyle", {}).get("mode") == "line"
        if line or p["type"] == "bargauge":
            if queried != [expr]:
                problems.append(
                    f"{where} draws {name}'s thresholds but queries\n  {queried}\nwhile {name} watches\n  {expr!r}"
                )
        elif len(queried) != 1 or expr not in queried[0]:
            problems.append(
                f"{where} is coloured by {name}'s thresholds but does not query what it watches: {queried} vs {expr!r}"
            )
    return problems, shown


@pytest.fixture(scope="module")
def distinct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return distinct_thresholds(tmp_path_factory.mktemp("thresholds"))


def test_no_two_alerts_compare_with_the_same_numbers(distinct: Path) -> None:
    watching = watched(distinct)
    assert len({values for _, values in watching.values()}) == len(watching), watching


def test_every_threshold_panel_queries_exactly_what_its_alert_watches(distinct: Path) -> None:
    watching = watched(distinct)
    problems, shown = mismatches(render_all(distinct), watching)
    assert not problems, "\n".join(problems)
    # every tiered alert has a panel, so none of them escapes the comparison above
    assert shown == set(watching), f"alerts no panel shows the thresholds of: {sorted(set(watching) - shown)}"


def test_a_panel_that_drifts_from_its_alert_is_named(distinct: Path) -> None:
    watching = watched(distinct)
    dashboards = render_all(distinct)
    infra = copy.deepcopy(dashboards["scalemart-infrastructure"])
    cpu = next(p for p in infra["panels"] if p["title"] == "CPU usage by host")
    # Grafana's window instead of the alert's: the line no longer marks where the alert fires
    cpu["targets"][0]["expr"] = cpu["targets"][0]["expr"].replace("[5m]", "[$__rate_interval]")
    problems, _ = mismatches({**dashboards, "scalemart-infrastructure": infra}, watching)
    assert len(problems) == 1 and problems[0].startswith(
        "Infrastructure Health / CPU usage by host draws HostHighCpuUsage's thresholds"
    ), problems
    # the memory panel drawing the CPU alert's line
    infra = copy.deepcopy(dashboards["scalemart-infrastructure"])
    panels = {p.get("title"): p for p in infra["panels"]}
    panels["Memory used by host"]["fieldConfig"] = copy.deepcopy(panels["CPU usage by host"]["fieldConfig"])
    problems, _ = mismatches({**dashboards, "scalemart-infrastructure": infra}, watching)
    assert len(problems) == 1 and "Memory used by host draws HostHighCpuUsage's" in problems[0], problems


def test_every_alert_watches_a_signal_and_every_signal_is_used() -> None:
    exprs = {a.lhs for a in alerts()}
    queried = {t["expr"] for d in render_all().values() for p in d["panels"] for t in p.get("targets") or []}
    for alert in alerts():
        assert alert.signal in signals.SIGNALS, f"{alert.name} watches a signal missing from signals.SIGNALS"
    for sig in signals.SIGNALS:
        assert sig.expr() in exprs or any(sig.panel() in q for q in queried), f"signal {sig.name} is unused"


# ----- no inline PromQL outside signals.py -----


def signal_metrics() -> set[str]:
    return set().union(*(metric_names(sig.expr()) for sig in signals.SIGNALS))


def _mentions(text: str, name: str) -> bool:
    if "_" not in name:
        # `up` is an English word too ("Redis up"): only the name alone or as PromQL (`up{`, `up == 0`)
        return text.strip() == name or re.search(rf"(?<![\w:]){name}\s*(\{{|\[|[=!<>]=|[<>])", text) is not None
    return re.search(rf"(?<![\w:]){name}(?![\w:])", text) is not None


def inline_promql(source: str, metrics: set[str]) -> list[str]:
    """String literals of a module that write PromQL a signal owns: a range function or histogram_quantile,
    or a metric a signal reads, the ALLOWED places aside. Docstrings and comments are prose."""
    tree = ast.parse(source)
    exempt: set[int] = set()

    def exempt_tree(node: ast.AST) -> None:
        exempt.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and ast.get_docstring(node) is not None:
            exempt_tree(node.body[0])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in INPUT_BUILDERS and node.args:
                exempt_tree(node.args[0])  # ALLOWED["input series"]
            if node.func.id in ("A", "Alert"):
                for arg in node.args[3:5]:
                    exempt_tree(arg)  # ALLOWED["alert prose"]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in exempt or not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        m = RANGE_FUNCTION.search(text)
        names = sorted(n for n in metrics if _mentions(text, n))
        if m or names:
            what = f"{m.group(1)}()" if m else ", ".join(names)
            found.append((node.lineno, f"line {node.lineno}: {text!r} writes {what}"))
    return [finding for _, finding in sorted(found)]


def test_no_rule_or_dashboard_module_writes_a_signals_promql() -> None:
    metrics = signal_metrics()
    assert {"scalemart_host_cpu_usage_seconds_total", "scalemart_http_requests_total", "up"} <= metrics
    problems = [
        f"{path.relative_to(ROOT)} {finding}"
        for path in MODULES
        for finding in inline_promql(path.read_text(encoding="utf-8"), metrics)
    ]
    assert not problems, "PromQL outside alert_rules/signals.py; use or add a signal there:\n" + "\n".join(problems)


def test_the_inline_check_flags_promql_and_only_the_allowed_places() -> None:
    source = '''
"""rate(x[5m]) in a docstring is prose."""
cpu = target('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))')
redis = stat("Redis up", "min(redis_up)")
targets = stat("Scrape targets up", f"sum by (job) ({q.sel('up')})")
ALERT = A("RedisDown", "g", s.REDIS_UP, "Redis is down.", "redis_up = {{ $value }}",
          fire=lambda f: _state_flip("redis_up", REDIS, 1, 0, f, True, f + 10))
old = A("X", "g", "k", "summary", "text", lhs="max by (env) (scalemart_queue_length)")
revenue = f"sum(increase({q.sel('scalemart_revenue_total')}[1h]))"
'''
    found = inline_promql(source, {"node_cpu_seconds_total", "redis_up", "up", "scalemart_queue_length"})
    assert [f.split(":")[0] for f in found] == ["line 3", "line 4", "line 5", "line 8", "line 9"], found
    assert "writes rate()" in found[0] and "writes redis_up" in found[1] and "writes up" in found[2], found
    assert "writes increase()" in found[4], found
