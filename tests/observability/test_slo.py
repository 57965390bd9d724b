"""SLOs as code: the `slos:` section is refused by key before anything is generated, the recording rules read
their counters through rate(), and the test-only window compression stays within the evaluation interval."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from alert_rules import slo, thresholds
from alert_rules.build import TEST_COMPRESS_VAR, build
from alert_rules.thresholds import ThresholdsError
from tests.observability.conftest import PYTHON, ROOT
from tests.observability.test_rules import raw_counters


def shipped() -> dict:
    return yaml.safe_load(thresholds.DEFAULT_PATH.read_text())


def refused(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ThresholdsError) as err:
        thresholds.load(path)
    return str(err.value)


def test_the_shipped_objectives_and_policy() -> None:
    s = thresholds.load().slos
    assert (s.availability.objective, s.availability.window) == (0.999, "28d")
    assert (s.purchase_latency.objective, s.purchase_latency.latency_seconds) == (0.99, 0.1)
    assert s.windows() == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    pairs = {(n, p.severity, w.long, w.short, w.burn_rate) for n, p in s.burn_rate_alerts.items() for w in p.windows}
    assert pairs == {
        ("page", "critical", "1h", "5m", 14.4),
        ("page", "critical", "6h", "30m", 6),
        ("ticket", "warning", "1d", "2h", 3),
        ("ticket", "warning", "3d", "6h", 1),
    }


def test_the_intervals_are_the_prometheus_roles() -> None:
    defaults = yaml.safe_load((ROOT / "roles" / "prometheus" / "defaults" / "main.yml").read_text())
    assert defaults["prometheus_evaluation_interval"] == thresholds.EVALUATION_INTERVAL
    assert defaults["prometheus_scrape_interval"] == thresholds.SCRAPE_INTERVAL


def test_an_objective_outside_0_1_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["slos"]["availability"]["objective"] = 1.0
    assert refused(tmp_path, data).startswith("slos.availability.objective: must be a fraction strictly between 0")


def test_a_window_shorter_than_the_evaluation_interval_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["slos"]["burn_rate_alerts"]["page"]["windows"][0]["short"] = "10s"
    message = refused(tmp_path, data)
    assert message.startswith("slos.burn_rate_alerts.page.windows.0.short: 10s is shorter than the rule evaluation"), (
        message
    )


def test_a_long_window_shorter_than_its_short_window_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["slos"]["burn_rate_alerts"]["ticket"]["windows"][1].update(long="1h", short="6h")
    message = refused(tmp_path, data)
    assert message.startswith("slos.burn_rate_alerts.ticket.windows.1.long: long window 1h must be longer"), message


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["slos"]["purchase_latency"]["latency"] = 0.1
    assert refused(tmp_path, data).startswith("slos.purchase_latency.latency: is not a known SLO key")


def test_a_latency_that_is_not_a_bucket_of_the_app_is_refused(tmp_path: Path) -> None:
    data = shipped()
    data["slos"]["purchase_latency"]["latency_seconds"] = 0.2
    message = refused(tmp_path, data)
    assert message.startswith("slos.purchase_latency.latency_seconds: 0.2 s is not a bucket"), message
    assert "0.1, 0.25" in message


def test_a_missing_slos_section_is_refused(tmp_path: Path) -> None:
    data = shipped()
    del data["slos"]
    assert refused(tmp_path, data).startswith("slos: is missing")


def test_recording_rules_cover_every_window_and_read_counters_through_rate(alerting_build: Path) -> None:
    group = yaml.safe_load((alerting_build / "rules" / f"{slo.GROUP}.yml").read_text())["groups"][0]
    records = [r for r in group["rules"] if "record" in r]
    assert {(r["record"], r["labels"]["slo"]) for r in records} == {
        (f"slo:sli_error:ratio_rate{w}", name)
        for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d")
        for name in ("availability", "purchase_latency")
    }
    for r in records:
        assert not raw_counters(r["record"], r["expr"]), r
    # the records come before the alerts that read them: one evaluation sees both
    kinds = ["record" in r for r in group["rules"]]
    assert kinds == sorted(kinds, reverse=True)
    alerts = [r for r in group["rules"] if "alert" in r]
    assert {(r["alert"], r["labels"]["severity"], r["labels"]["window"]) for r in alerts} == {
        (name, sev, w)
        for name in slo.alert_names()
        for sev, w in (("critical", "1h/5m"), ("critical", "6h/30m"), ("warning", "1d/2h"), ("warning", "3d/6h"))
    }


def run_build(out: Path, factor: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), "-m", "alert_rules", "build", "--out", str(out)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", TEST_COMPRESS_VAR: factor},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compressed_windows_stay_whole_evaluation_intervals_and_pass_promtool(tmp_path: Path, promtool: str) -> None:
    out = tmp_path / "build" / "dev" / "artifacts" / "rules"
    proc = run_build(out, "60")
    assert proc.returncode == 0, proc.stderr
    text = (out / "rules" / f"{slo.GROUP}.yml").read_text()
    for window in ("[30s]", "[1m]", "[2m]", "[6m]", "[24m]", "[72m]", "[672m]"):
        assert window in text, window
    assert "[5m]" not in text
    proc = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=out / "tests", capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_compression_is_refused_for_another_environment(tmp_path: Path) -> None:
    proc = run_build(tmp_path / "build" / "prod" / "artifacts" / "rules", "60")
    assert proc.returncode == 2 and f"{TEST_COMPRESS_VAR}: compresses the SLO windows of 'prod'" in proc.stderr


def test_compression_in_the_thresholds_file_is_refused_for_a_real_environment(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "alert_rules" / "thresholds.yml").read_text())
    assert data["slos"].get("compress_windows_for_tests", 1) == 1, "the shipped windows must not be compressed"
    data["slos"]["compress_windows_for_tests"] = 12
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ThresholdsError, match=r"slos.compress_windows_for_tests: is 12: .* of 'staging'"):
        build(tmp_path / "build" / "staging" / "artifacts" / "rules", path)
    build(tmp_path / "build" / "dev" / "artifacts" / "rules", path)  # a test environment may


def test_compression_that_merges_two_windows_is_refused(tmp_path: Path) -> None:
    proc = run_build(tmp_path, "100000")
    assert proc.returncode == 2 and "compressed by 100000, 1h and 5m both last 30s" in proc.stderr, proc.stderr


def test_without_compression_the_build_is_unchanged(tmp_path: Path) -> None:
    build(tmp_path)
    assert "[28d]" in (tmp_path / "rules" / f"{slo.GROUP}.yml").read_text()
