"""Load-test gates: read from the thresholds file, validated, applied and reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alert_rules import thresholds
from loadtests.gates import gate_failures
from loadtests.run import Gates, best_step

ROOT = Path(__file__).resolve().parents[2]


def _with_loadtest(tmp_path: Path, **gate: object) -> Path:
    data = yaml.safe_load((ROOT / "alert_rules" / "thresholds.yml").read_text())
    data["loadtest"].update(gate)
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_gates_come_from_the_thresholds_file() -> None:
    gates = Gates.from_thresholds()
    th = thresholds.load()
    assert gates.p95_ms == th["loadtest.p95_ms"].values["limit"]
    assert gates.error_ratio == th["loadtest.error_ratio"].values["limit"]
    assert gates.oversell == 0


@pytest.mark.parametrize(("gate", "value", "message"), [
    ("p95_ms", {"limit": -5}, "loadtest.p95_ms.limit: must not be negative"),
    ("error_ratio", {"limit": 3}, "loadtest.error_ratio.limit: is a ratio"),
    ("oversell_units", {}, "loadtest.oversell_units.limit: is missing"),
    ("p95_ms", {"limit": 100, "for": "5m"}, "loadtest.p95_ms.for: is not used"),
])
def test_bad_gate_is_rejected_with_its_key(tmp_path: Path, gate: str, value: object, message: str) -> None:
    with pytest.raises(thresholds.ThresholdsError, match=message.replace(".", r"\.")):
        thresholds.load(_with_loadtest(tmp_path, **{gate: value}))


def test_gates_name_the_gate_and_the_measured_value() -> None:
    failures = gate_failures(requests=1000, failures=30, p95_ms=250.0, p95_gate_ms=100, error_gate=0.01)
    assert any("gate p95 < 100 ms" in f and "250 ms" in f for f in failures)
    assert any("error rate" in f and "3.00%" in f for f in failures)
    assert gate_failures(requests=1000, failures=5, p95_ms=80.0, p95_gate_ms=100, error_gate=0.01) == []
    assert gate_failures(requests=0, failures=0, p95_ms=0.0, p95_gate_ms=100, error_gate=0.01)


def test_best_step_is_the_last_step_that_met_the_gates(tmp_path: Path) -> None:
    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,Total Request Count,Total Failure Count\n"
    rows = []
    for users, p95, rps in [(25, 40, 20), (25, 45, 21), (50, 60, 40), (50, 70, 41), (75, 150, 50), (75, 200, 52)]:
        rows.append(f"0,{users},,Aggregated,{rps},0,10,{p95},{users * 10},0\n")
    prefix = tmp_path / "step"
    Path(f"{prefix}_stats_history.csv").write_text(header + "".join(rows))
    best = best_step(prefix, Gates(p95_ms=100, error_ratio=0.01, oversell=0))
    assert best["users"] == 50 and best["rps"] == 41 and best["p95"] == 70
