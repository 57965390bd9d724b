"""The thresholds file: the shipped one is valid; bad values are rejected by key before any output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from alert_rules import thresholds
from alert_rules.thresholds import ThresholdsError
from tests.observability.conftest import PYTHON, ROOT


def shipped() -> dict:
    return yaml.safe_load(thresholds.DEFAULT_PATH.read_text())


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_file_loads_with_the_issue_numbers() -> None:
    t = thresholds.load()
    assert (t.api.error_ratio.warning, t.api.error_ratio.critical, t.api.error_ratio.for_) == (0.02, 0.05, "5m")
    assert (t.api.latency_p95_seconds.warning, t.api.latency_p95_seconds.for_) == (1.0, "5m")
    assert (t.api.response_time_p99_seconds.warning, t.api.response_time_p99_seconds.critical) == (2.0, 5.0)
    assert (t.hosts.cpu_ratio.warning, t.hosts.cpu_ratio.critical) == (0.75, 0.90)
    assert (t.hosts.memory_ratio.warning, t.hosts.memory_ratio.critical) == (0.80, 0.90)
    assert (t.api.concurrent_users.warning, t.api.concurrent_users.critical) == (1500, 2000)
    assert (t.datastores.database_connections.warning, t.datastores.database_connections.critical) == (200, 240)
    assert (t.datastores.cache_hit_ratio.warning, t.datastores.cache_hit_ratio.critical) == (0.70, 0.50)
    assert t.worker.queue_length.warning == 1000
    assert t.business.stock_left.info == 10
    assert t.backups.last_success_age_hours.warning == 26
    assert t.datastores.redis_down.severity == t.datastores.mongodb_down.severity == "critical"
    assert t["loadtest.oversell_units"].values == {"limit": 0}


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d["api"].pop("error_ratio"), "api.error_ratio", "missing"),
        (lambda d: d["api"]["error_ratio"].pop("critical"), "api.error_ratio.critical", "missing"),
        (lambda d: d["hosts"]["cpu_ratio"].update(warning=-0.1), "hosts.cpu_ratio.warning", "negative"),
        (lambda d: d["api"]["concurrent_users"].update(warning=2000), "api.concurrent_users", "must be below"),
        (lambda d: d["api"]["error_ratio"].update(warning=0.09), "api.error_ratio", "must be below"),
        (
            lambda d: d["datastores"]["cache_hit_ratio"].update(warning=0.4),
            "datastores.cache_hit_ratio",
            "must be above",
        ),
        (lambda d: d["hosts"]["memory_ratio"].update(critical=90), "hosts.memory_ratio.critical", "ratio"),
        (
            lambda d: d["api"]["latency_p95_seconds"].update({"for": "five minutes"}),
            "api.latency_p95_seconds.for",
            "duration",
        ),
        (lambda d: d["api"].update(error_rate={"warning": 1, "for": "5m"}), "api.error_rate", "not a known"),
        (lambda d: d["datastores"]["redis_down"].update(severity="page"), "datastores.redis_down.severity", "one of"),
        (lambda d: d["worker"]["queue_length"].update(warning="lots"), "worker.queue_length.warning", "number"),
        (lambda d: d["loadtest"]["p95_ms"].pop("limit"), "loadtest.p95_ms.limit", "missing"),
        (lambda d: d["loadtest"]["oversell_units"].update(limit=-1), "loadtest.oversell_units.limit", "negative"),
    ],
)
def test_bad_value_is_rejected_naming_the_key(tmp_path: Path, mutate, key: str, words: str) -> None:
    data = shipped()
    mutate(data)
    with pytest.raises(ThresholdsError) as err:
        thresholds.load(write(tmp_path, data))
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert words in str(err.value)
    assert "fix:" in str(err.value)


@pytest.mark.parametrize("module", ["alert_rules", "dashboards"])
def test_build_stops_before_writing_anything_on_a_bad_file(tmp_path: Path, module: str) -> None:
    data = shipped()
    data["hosts"]["cpu_ratio"]["warning"] = 0.95  # inverted: warning above critical
    bad = write(tmp_path, data)
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(PYTHON), "-m", module, "build", "--out", str(out), "--thresholds", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "hosts.cpu_ratio" in proc.stderr
    assert not out.exists()


def test_every_value_of_the_file_is_what_the_callers_read() -> None:
    t = thresholds.load()
    for section, entries in shipped().items():
        if section == "slos":
            continue  # objectives, not thresholds: tests/observability/test_slo.py
        for name, entry in entries.items():
            item = t[f"{section}.{name}"]
            assert isinstance(item, thresholds.Threshold) and getattr(t, section).__dict__[name] is item
            assert item.values == {k: v for k, v in entry.items() if k not in ("for", "severity")}
            assert (item.for_, item.severity) == (entry.get("for", "0s"), entry.get("severity"))


def test_a_misspelt_key_is_named_rather_than_the_key_it_misses(tmp_path: Path) -> None:
    data = shipped()
    data["api"]["error_rate"] = data["api"].pop("error_ratio")
    with pytest.raises(ThresholdsError) as err:
        thresholds.load(write(tmp_path, data))
    assert err.value.key == "api.error_rate"


def test_a_missing_section_names_its_first_key_and_the_file(tmp_path: Path) -> None:
    data = shipped()
    del data["worker"]
    path = write(tmp_path, data)
    with pytest.raises(ThresholdsError) as err:
        thresholds.load(path)
    assert str(err.value) == f"worker.queue_length: is missing (fix: add `queue_length:` under `worker:` in {path})"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"warning": 1.0},
            "api.latency_p95_seconds.for: must be a Prometheus duration, got None (fix: write e.g. 5m or 1h)",
        ),
        (
            {"warning": 1.0, "for": "5m", "critical": 2.0},
            "api.latency_p95_seconds.critical: is not used for this key (fix: allowed: for, warning)",
        ),
        (
            {"warning": None, "for": "5m"},
            "api.latency_p95_seconds.warning: is missing (fix: add `warning: <number>` to api.latency_p95_seconds)",
        ),
    ],
)
def test_messages_name_key_problem_and_fix(tmp_path: Path, entry: dict, message: str) -> None:
    data = shipped()
    data["api"]["latency_p95_seconds"] = entry
    with pytest.raises(ThresholdsError) as err:
        thresholds.load(write(tmp_path, data))
    assert str(err.value) == message
