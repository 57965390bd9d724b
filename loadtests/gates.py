"""Pass/fail gates for a Locust run. Kept free of Locust imports: Locust monkey-patches the
process (gevent), so the runner and the tests import this module, not the locustfile."""

from __future__ import annotations


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
