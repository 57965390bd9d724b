"""Load-test gates and options: read from the thresholds file, validated, applied and reported by name; a
saturated load generator is detected, and a bad option or an absent environment stops the run before any traffic."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import yaml

from alert_rules import thresholds
from loadtests import run
from loadtests.gates import LoadOptionError, gate_failures, generator_saturation
from loadtests.run import Gates, GeneratorCpu, Options, best_step

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


@pytest.mark.parametrize(
    ("gate", "value", "message"),
    [
        ("p95_ms", {"limit": -5}, "loadtest.p95_ms.limit: must not be negative"),
        ("error_ratio", {"limit": 3}, "loadtest.error_ratio.limit: is a ratio"),
        ("oversell_units", {}, "loadtest.oversell_units.limit: is missing"),
        ("p95_ms", {"limit": 100, "for": "5m"}, "loadtest.p95_ms.for: is not used"),
    ],
)
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
    best = best_step(prefix, Gates(p95_ms=100, error_ratio=0.01, oversell=0, generator_cpu_ratio=0.9))
    assert best["users"] == 50 and best["rps"] == 41 and best["p95"] == 70


def test_best_step_stops_before_the_generator_saturated(tmp_path: Path) -> None:
    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,Total Request Count,Total Failure Count\n"
    rows = [f"0,{u},,Aggregated,{u},0,10,40,{u * 10},0\n" for u in (25, 25, 50, 50, 75, 75)]
    prefix = tmp_path / "step"
    Path(f"{prefix}_stats_history.csv").write_text(header + "".join(rows))
    gates = Gates(p95_ms=100, error_ratio=0.01, oversell=0, generator_cpu_ratio=0.9)
    assert best_step(prefix, gates)["users"] == 75
    assert best_step(prefix, gates, saturated_users=75)["users"] == 50, "a saturated step measures Locust, not the shop"


@pytest.mark.parametrize(
    ("samples", "held"),
    [
        ([{"a": 95.0}, {"a": 97.0}, {"a": 99.0}], 95.0),  # three in a row above 90 %: saturated
        ([{"a": 95.0}, {"a": 50.0}, {"a": 99.0}, {"a": 99.0}], None),  # a busy moment is not saturation
        ([{"a": 60.0, "b": 91.0}, {"a": 60.0, "b": 92.0}, {"a": 60.0, "b": 93.0}], 91.0),  # any one process
        ([{"a": 95.0}, {"b": 95.0}, {"a": 95.0}], None),  # a process that vanished breaks its streak
        ([], None),
    ],
)
def test_generator_saturation_needs_a_sustained_busy_process(
    samples: list[dict[str, float]], held: float | None
) -> None:
    assert generator_saturation(samples, 90.0) == held


def test_generator_summary_flags_saturation() -> None:
    cpu = GeneratorCpu(limit_percent=90.0, samples=[{"1": 95.0, "2": 40.0}] * 4, machine=[180.0, 190.0])
    summary = cpu.summary()
    assert summary["saturated"] is True and summary["saturated_at_percent"] == 95.0
    assert summary["processes"] == 2 and summary["mean_percent"] == {"1": 95.0, "2": 40.0}
    assert summary["machine_busy_percent"] == 185.0
    assert GeneratorCpu(limit_percent=90.0, samples=[{"1": 50.0}] * 5).summary()["saturated"] is False


def _options(*argv: str) -> Options:
    parser_args = argparse.Namespace(
        scenario="normal", users=None, think=None, duration=None, processes=None, workers=0
    )
    for item in argv:
        key, _, value = item.partition("=")
        setattr(parser_args, key, int(value) if key in ("users", "processes", "workers") else value)
    return Options.from_args(parser_args)


def test_scenarios_give_their_defaults() -> None:
    flash = _options("scenario=flash")
    assert (flash.users, flash.think, flash.spawn_rate) == (10_000, (5.0, 15.0), 100)
    normal = _options("users=500", "think=1-3")
    assert (normal.users, normal.think, normal.spawn_rate) == (500, (1.0, 3.0), 100)
    assert _options("scenario=stampede", "users=300").spawn_rate == 300, "a stampede starts everyone at once"
    assert _options().processes == os.cpu_count(), "one Locust process per core by default"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("think=5-1",), "THINK=5-1 starts above its end: write the smaller number first, e.g. THINK=1-5"),
        (("think=fast",), "THINK='fast' is not a range of seconds: write it as MIN-MAX"),
        (("users=0",), "USERS=0 sends no traffic: give at least 1 user"),
        (
            ("scenario=black-friday",),
            "SCENARIO=black-friday is not a scenario: pick one of normal, flash, stampede, step",
        ),
        (("duration=soon",), "DURATION=soon is not a Locust run time: write e.g. 30s, 3m or 1h30m"),
        (("processes=0",), "PROCESSES=0: give at least 1 Locust process"),
    ],
)
def test_bad_load_options_are_named_with_the_fix(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(LoadOptionError) as err:
        _options(*argv)
    assert str(err.value).startswith(message)


def test_bad_option_stops_the_run_before_any_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    # No environment named like this exists: the option check must come first, with one line and exit code 2.
    assert run.main(["--env", "no-such-env", "--think", "5-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["load: THINK=5-1 starts above its end: write the smaller number first, e.g. THINK=1-5"]


def test_an_environment_that_is_not_up_is_named_before_any_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "BUILD", tmp_path / "build")
    with pytest.raises(
        SystemExit,
        match=r"build/ghost/outputs\.json is missing: bring the environment up first "
        r"with `make up ENV=ghost`",
    ):
        run.main(["--env", "ghost"])
    # outputs left behind by an environment that was taken down: the shop must answer
    (tmp_path / "build" / "ghost").mkdir(parents=True)
    (tmp_path / "build" / "ghost" / "outputs.json").write_text('{"urls": {"shop": "http://127.0.0.1:9"}}')
    monkeypatch.setenv("SCALEMART_ADMIN_TOKEN", "x")
    with pytest.raises(
        SystemExit,
        match=r"ENV=ghost: the shop at http://127\.0\.0\.1:9 does not answer "
        r"\(ConnectError\): bring it up with `make up ENV=ghost`",
    ):
        run.main(["--env", "ghost"])


def test_a_step_is_judged_on_its_own_samples_not_the_window_it_inherits(tmp_path: Path) -> None:
    # Locust's current p95 covers the last 10 s: a step's first samples still carry the step before.
    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,Total Request Count,Total Failure Count\n"
    samples = [(100, 0, 190)] + [(101 + t, 25, 110 if t < 8 else 30) for t in range(15)]
    samples += [(116 + t, 50, 160 if t < 5 else 60) for t in range(15)]
    samples += [(131 + t, 75, 90 if t < 3 else 140) for t in range(15)]
    rows = [f"{ts},{users},,Aggregated,{users},0,10,{p95},{users * 10},0\n" for ts, users, p95 in samples]
    prefix = tmp_path / "step"
    Path(f"{prefix}_stats_history.csv").write_text(header + "".join(rows))
    best = best_step(prefix, Gates(p95_ms=100, error_ratio=0.01, oversell=0, generator_cpu_ratio=0.9))
    assert best["users"] == 50 and best["p95"] == 60, best
