"""Alert rules: promtool-clean, unit-tested (fire and must-not-fire per alert), with real runbooks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from alert_rules import thresholds
from alert_rules.build import build
from alert_rules.rules import WATCHDOG, alert_names, alerts
from alert_rules.signals import BALANCER_RATE_LIMITED, CLIENT_ERRORS, ERROR_RATIO, OPEN_CONNECTIONS, TOKEN_FAILURES
from tests.observability.conftest import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks"
COUNTER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*_(?:total|bucket|count|sum))\b")
# The one place raw counters are right: accepted minus closed connections of one FerretDB process is
# the number open now, a gauge (FerretDB has no gauge for it; both counters reset together). Only this
# exact expression, and only in this alert, is exempt; anything else around it is still checked.
RAW_COUNTER_DIFFERENCES = {"MongoDBTooManyConnections": OPEN_CONNECTIONS.expr()}


def all_rules(build_dir: Path) -> list[dict]:
    rules: list[dict] = []
    for path in sorted((build_dir / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            # the alerting rules; the SLO recording rules are checked in test_slo.py
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def test_promtool_check_rules_is_clean(alerting_build: Path, promtool: str) -> None:
    files = sorted(str(p) for p in (alerting_build / "rules").glob("*.yml"))
    proc = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr


def test_promtool_unit_tests_pass(alerting_build: Path, promtool: str) -> None:
    proc = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=alerting_build / "tests",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case(alerting_build: Path) -> None:
    tests = yaml.safe_load((alerting_build / "tests" / "alerts.test.yml").read_text())["tests"]
    fired: dict[str, set[str]] = {}
    quiet: set[str] = set()
    for group in tests:
        for case in group["alert_rule_test"]:
            if case["exp_alerts"]:
                for exp in case["exp_alerts"]:
                    fired.setdefault(case["alertname"], set()).add(exp["exp_labels"]["severity"])
                    assert set(exp["exp_annotations"]) == {"summary", "description", "runbook_url"}
            else:
                quiet.add(case["alertname"])
    assert set(fired) == set(alert_names())
    # the Watchdog fires by design: it has no quiet case
    assert quiet == set(alert_names()) - {WATCHDOG}
    t = thresholds.load()
    for alert in alerts():
        th = t[alert.key]
        expected = {th.severity} if th.severity else set(th.values)
        assert fired[alert.name] == expected, f"{alert.name}: every tier must fire in a test"


def test_a_rule_that_drifts_from_its_test_fails_promtool(tmp_path: Path, promtool: str) -> None:
    # the generated tests assert values, not just presence: a changed threshold in a rule file is caught
    build(tmp_path)
    api = tmp_path / "rules" / "scalemart-api.yml"
    api.write_text(api.read_text().replace("> 0.05", "> 0.5", 1))
    proc = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=tmp_path / "tests",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "ScaleMartHighErrorRate" in proc.stdout + proc.stderr


def test_rules_carry_severity_annotations_and_thresholds_file_durations(alerting_build: Path) -> None:
    t = thresholds.load()
    by_name = {a.name: a for a in alerts()}
    for rule in all_rules(alerting_build):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        ann = rule["annotations"]
        assert set(ann) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in ann["summary"], f"{name}: summary must be static"
        assert "$value" in ann["description"] or name == WATCHDOG, f"{name}: description must show the value"
        assert ann["runbook_url"] == f"docs/runbooks/{name}.md"
        if name in by_name:  # the Watchdog and the SLO burn alerts (test_slo.py) have no thresholds key
            assert rule["for"] == t[by_name[name].key].for_, name


def raw_counters(alert: str, expr: str) -> list[str]:
    """Counters in `expr` not directly inside rate()/increase()/irate(), the alert's exemption aside."""
    exempt = RAW_COUNTER_DIFFERENCES.get(alert)
    if exempt is not None:
        expr = expr.replace(exempt, "0")
    return [
        m.group(1)
        for m in COUNTER.finditer(expr)
        if not re.search(r"\b(rate|increase|irate)\($", expr[: m.start()].rstrip())
    ]


def test_counters_are_always_wrapped_in_rate_or_increase(alerting_build: Path) -> None:
    rules = all_rules(alerting_build)
    for rule in rules:
        assert not raw_counters(rule["alert"], rule["expr"]), (
            f"{rule['alert']}: counters used without rate()/increase(): {rule['expr']}"
        )
    for alert, expr in RAW_COUNTER_DIFFERENCES.items():
        assert any(r["alert"] == alert and expr in r["expr"] for r in rules), (
            f"{alert} no longer uses its raw-counter exemption: drop it from RAW_COUNTER_DIFFERENCES"
        )


def test_the_raw_counter_exemption_covers_only_its_exact_expression_in_its_alert() -> None:
    exact = OPEN_CONNECTIONS.expr()
    assert raw_counters("MongoDBTooManyConnections", f"{exact}\n> 200") == []
    # the same expression in another alert
    assert raw_counters("ScaleMartQueueBacklog", exact) == [
        "ferretdb_client_accepts_total",
        "ferretdb_client_duration_seconds_count",
        "ferretdb_client_accepts_total",
    ]
    # a raw counter added next to it
    assert raw_counters("MongoDBTooManyConnections", f"{exact} + ferretdb_client_requests_total") == [
        "ferretdb_client_requests_total"
    ]
    # an edited difference (failed accepts counted as connections) is no longer the exempt one
    edited = exact.replace('{error="0"}', "", 1)
    assert "ferretdb_client_accepts_total" in raw_counters("MongoDBTooManyConnections", edited)


def test_ferretdb_open_connections_counts_accepted_minus_closed(tmp_path: Path, promtool: str) -> None:
    """The expression on real PromQL: before any connection closed (no duration series yet), with failed
    accepts, and across a FerretDB restart (both counters reset together)."""
    inst = 'env="test",job="ferretdb",instance="data-1:8088"'
    expr = OPEN_CONNECTIONS.expr()
    labels = '{env="test",instance="data-1:8088"}'
    cases = [
        # 7 connections accepted, none closed yet, 3 failed accept() calls: 7 open
        (
            [
                (f'ferretdb_client_accepts_total{{{inst},error="0"}}', "7x5"),
                (f'ferretdb_client_accepts_total{{{inst},error="1"}}', "3x5"),
            ],
            7,
        ),
        # restart at minute 3: counters start again from 0; 4 accepted, 1 closed with an error
        (
            [
                (f'ferretdb_client_accepts_total{{{inst},error="0"}}', "50 60 70 2 4 4"),
                (f'ferretdb_client_duration_seconds_count{{{inst},error="0"}}', "40 45 50 0 0 0"),
                (f'ferretdb_client_duration_seconds_count{{{inst},error="1"}}', "_ _ _ _ 1 1"),
            ],
            3,
        ),
    ]
    (tmp_path / "empty.yml").write_text("groups: []\n")
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {"expr": expr, "eval_time": "5m", "exp_samples": [{"labels": labels, "value": value}]}
            ],
        }
        for series, value in cases
    ]
    (tmp_path / "open.test.yml").write_text(yaml.safe_dump({"rule_files": ["empty.yml"], "tests": tests}))
    proc = subprocess.run(
        [promtool, "test", "rules", "open.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_error_ratio_is_zero_without_5xx_and_one_when_every_request_fails(tmp_path: Path, promtool: str) -> None:
    """ScaleMartHighErrorRate's expression (and its panels') on real PromQL: a healthy instance with no 5xx series
    yet shows 0, not nothing; one that has answered only 5xx since it started shows 1; a mix, its share."""
    app = 'env="test",job="scalemart-app",instance="app-1:8000",route="/api/buy",method="POST"'
    labels = '{env="test",instance="app-1:8000"}'
    cases = [
        ([(f'scalemart_http_requests_total{{{app},status="200"}}', "0+600x10")], 0),
        ([(f'scalemart_http_requests_total{{{app},status="503"}}', "0+60x10")], 1),
        (
            [
                (f'scalemart_http_requests_total{{{app},status="200"}}', "0+450x10"),
                (f'scalemart_http_requests_total{{{app},status="500"}}', "0+150x10"),
            ],
            0.25,
        ),
    ]
    (tmp_path / "empty.yml").write_text("groups: []\n")
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {"expr": ERROR_RATIO.expr(), "eval_time": "10m", "exp_samples": [{"labels": labels, "value": value}]}
            ],
        }
        for series, value in cases
    ]
    (tmp_path / "ratio.test.yml").write_text(yaml.safe_dump({"rule_files": ["empty.yml"], "tests": tests}))
    proc = subprocess.run(
        [promtool, "test", "rules", "ratio.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_balancer_refusals_are_zero_before_the_first_429(tmp_path: Path, promtool: str) -> None:
    """ScaleMartBalancerRateLimited's expression (and its panel's) on real PromQL: mtail has no code="429" series
    until nginx turns someone away, and the panel shows 0 then, not nothing; after that, 429s per minute."""
    lb = 'env="test",job="lb-log",instance="lb-1:3903"'
    cases = [
        ([(f'scalemart_lb_responses_total{{{lb},code="200"}}', "0+600x10")], 0),
        (
            [
                (f'scalemart_lb_responses_total{{{lb},code="200"}}', "0+600x10"),
                (f'scalemart_lb_responses_total{{{lb},code="429"}}', "0+90x10"),
            ],
            90,
        ),
    ]
    (tmp_path / "empty.yml").write_text("groups: []\n")
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {
                    "expr": BALANCER_RATE_LIMITED.expr(),
                    "eval_time": "10m",
                    "exp_samples": [{"labels": '{env="test"}', "value": value}],
                }
            ],
        }
        for series, value in cases
    ]
    (tmp_path / "lb.test.yml").write_text(yaml.safe_dump({"rule_files": ["empty.yml"], "tests": tests}))
    proc = subprocess.run(
        [promtool, "test", "rules", "lb.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _expression_cases(
    tmp_path: Path,
    promtool: str,
    expr: str,
    cases: list[tuple[list[tuple[str, str]], list[str]]],
) -> None:
    """`expr` at 10m on each case's input series must give exactly its samples (promtool's `labels value`)."""
    (tmp_path / "empty.yml").write_text("groups: []\n")
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {
                    "expr": expr,
                    "eval_time": "10m",
                    "exp_samples": [
                        {"labels": lab, "value": float(val)} for lab, val in (x.rsplit(" ", 1) for x in samples)
                    ],
                }
            ],
        }
        for series, samples in cases
    ]
    (tmp_path / "expr.test.yml").write_text(yaml.safe_dump({"rule_files": ["empty.yml"], "tests": tests}))
    proc = subprocess.run(
        [promtool, "test", "rules", "expr.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_token_refusals_are_zero_before_the_first_and_then_per_reason(tmp_path: Path, promtool: str) -> None:
    """ScaleMartTokenFailureBurst's expression (and its panel's): no reason has a series until the app refuses a
    token, and the panel shows 0 per environment then, not nothing; after that one series per reason and no 0 beside
    them (the `or on (env)`)."""
    app = 'env="test",job="scalemart-app",instance="app-1:8000"'
    ok = (f'scalemart_http_requests_total{{{app},route="/api/buy",method="POST",status="201"}}', "0+600x10")
    _expression_cases(
        tmp_path,
        promtool,
        TOKEN_FAILURES.expr(),
        [
            ([ok], ['{env="test"} 0']),
            (
                [
                    ok,
                    (f'scalemart_token_failures_total{{{app},reason="expired"}}', "0+6x10"),
                    (f'scalemart_token_failures_total{{{app},reason="bad_signature"}}', "0+90x10"),
                ],
                ['{env="test",reason="expired"} 6', '{env="test",reason="bad_signature"} 90'],
            ),
        ],
    )


def test_client_errors_are_per_address_over_codes_and_balancers(tmp_path: Path, promtool: str) -> None:
    """ScaleMartClientScanning's expression (and its panel's): 0 per environment while no address has erred; then
    one series per client address, its 401, 403 and 404 summed over the codes and the lb hosts."""
    lb1, lb2 = ('env="test",job="lb-log",instance="lb-1:3903"', 'env="test",job="lb-log",instance="lb-2:3903"')
    answered = (f'scalemart_lb_responses_total{{{lb1},code="200"}}', "0+600x10")
    _expression_cases(
        tmp_path,
        promtool,
        CLIENT_ERRORS.expr(),
        [
            ([answered], ['{env="test"} 0']),
            (
                [
                    answered,
                    (f'scalemart_lb_client_errors_total{{{lb1},client="203.0.113.7",code="404"}}', "0+40x10"),
                    (f'scalemart_lb_client_errors_total{{{lb2},client="203.0.113.7",code="404"}}', "0+30x10"),
                    (f'scalemart_lb_client_errors_total{{{lb1},client="203.0.113.7",code="401"}}', "0+5x10"),
                    (f'scalemart_lb_client_errors_total{{{lb1},client="198.51.100.20",code="403"}}', "0+2x10"),
                ],
                ['{env="test",client="203.0.113.7"} 75', '{env="test",client="198.51.100.20"} 2'],
            ),
        ],
    )


@pytest.mark.parametrize("name", alert_names())
def test_runbook_explains_meaning_confirmation_and_action(name: str) -> None:
    path = RUNBOOKS / f"{name}.md"
    assert path.exists(), f"write {path.relative_to(ROOT)}"
    text = path.read_text()
    for heading in ("## What it means", "## How to confirm", "## What to do"):
        assert heading in text, f"{path.name} lacks `{heading}`"
    assert len(text.split()) > 80, f"{path.name} is too thin to act on"
    assert "TODO" not in text and "TBD" not in text


def test_build_cli_writes_rules_and_tests(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "alert_rules",
            "build",
            "--out",
            str(tmp_path),
            "--runbook-base-url",
            "https://runbooks.internal/scalemart/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tests" / "alerts.test.yml").exists()
    rules = all_rules(tmp_path)
    assert {r["alert"] for r in rules} == set(alert_names())
    assert all(r["annotations"]["runbook_url"].startswith("https://runbooks.internal/scalemart/") for r in rules)
