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
from tests.observability.conftest import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks"
COUNTER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*_(?:total|bucket|count|sum))\b")


def all_rules(build_dir: Path) -> list[dict]:
    rules = []
    for path in sorted((build_dir / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def test_promtool_check_rules_is_clean(alerting_build: Path, promtool: str) -> None:
    files = sorted(str(p) for p in (alerting_build / "rules").glob("*.yml"))
    proc = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr


def test_promtool_unit_tests_pass(alerting_build: Path, promtool: str) -> None:
    proc = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=alerting_build / "tests",
                          capture_output=True, text=True, timeout=120)
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
    proc = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=tmp_path / "tests",
                          capture_output=True, text=True, timeout=120)
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
        if name != WATCHDOG:
            assert rule["for"] == t[by_name[name].key].for_, name


def test_counters_are_always_wrapped_in_rate_or_increase(alerting_build: Path) -> None:
    for rule in all_rules(alerting_build):
        expr = rule["expr"]
        for m in COUNTER.finditer(expr):
            before = expr[: m.start()].rstrip()
            assert re.search(r"\b(rate|increase|irate)\($", before), \
                f"{rule['alert']}: counter {m.group(1)} is used without rate()/increase(): {expr}"


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
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "alert_rules", "build", "--out",
                           str(tmp_path), "--runbook-base-url", "https://runbooks.internal/scalemart/"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tests" / "alerts.test.yml").exists()
    rules = all_rules(tmp_path)
    assert {r["alert"] for r in rules} == set(alert_names())
    assert all(r["annotations"]["runbook_url"].startswith("https://runbooks.internal/scalemart/") for r in rules)
