"""Pass/fail gates and load-generator checks for a Locust run. Kept free of Locust imports: Locust
monkey-patches the process (gevent), so the runner and the tests import this module, not the locustfile."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_THINK = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")
# A process is saturated when it stays above the limit for this many consecutive samples (about a
# second apart): one busy second while users spawn is not saturation, three in a row are.
SATURATED_SAMPLES = 3


class LoadOptionError(ValueError):
    """A bad load-test option; the message names the option and the fix."""


def parse_think(text: str, option: str = "THINK") -> tuple[float, float]:
    """'0.5-2' → (0.5, 2.0): the think time between a user's requests, in seconds."""
    match = _THINK.match(text)
    if not match:
        raise LoadOptionError(f"{option}={text!r} is not a range of seconds: write it as MIN-MAX, e.g. {option}=0.5-2")
    low, high = float(match.group(1)), float(match.group(2))
    if low > high:
        raise LoadOptionError(
            f"{option}={text} starts above its end: write the smaller number first, "
            f"e.g. {option}={match.group(2)}-{match.group(1)}"
        )
    return low, high


def gate_failures(requests: int, failures: int, p95_ms: float, p95_gate_ms: float, error_gate: float) -> list[str]:
    """The gates that failed, each naming the gate and the measured value."""
    if requests == 0:
        return ["no requests were made: is the load balancer reachable?"]
    found = []
    ratio = failures / requests
    if p95_ms >= p95_gate_ms:
        found.append(f"gate p95 < {p95_gate_ms:g} ms failed: measured p95 = {p95_ms:.0f} ms")
    if ratio >= error_gate:
        found.append(f"gate error rate < {error_gate:.1%} failed: measured {ratio:.2%}")
    return found


def generator_saturation(samples: Sequence[Mapping[str, float]], limit_percent: float) -> float | None:
    """The CPU a Locust process held above `limit_percent` for SATURATED_SAMPLES samples in a row, or None.

    `samples` is one mapping per sampling instant, process → CPU percent of one core.
    """
    streak: dict[str, list[float]] = {}
    worst: float | None = None
    for sample in samples:
        for proc, cpu in sample.items():
            run = streak.setdefault(proc, [])
            if cpu > limit_percent:
                run.append(cpu)
                if len(run) >= SATURATED_SAMPLES:
                    held = min(run[-SATURATED_SAMPLES:])
                    worst = held if worst is None else max(worst, held)
            else:
                run.clear()
        for proc in set(streak) - set(sample):
            streak[proc].clear()
    return worst


@dataclass
class Gates:
    """The load-test gates: section `loadtest` of the thresholds file, their one home."""

    p95_ms: float
    error_ratio: float
    oversell: int
    generator_cpu_ratio: float

    @classmethod
    def from_thresholds(cls) -> Gates:
        from alert_rules import thresholds

        th = thresholds.load()
        return cls(
            p95_ms=th["loadtest.p95_ms"].values["limit"],
            error_ratio=th["loadtest.error_ratio"].values["limit"],
            oversell=int(th["loadtest.oversell_units"].values["limit"]),
            generator_cpu_ratio=th["loadtest.generator_cpu_ratio"].values["limit"],
        )
