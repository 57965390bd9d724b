"""SLOs as code: the `slos:` section of thresholds.yml → SLI recording rules, multi-window multi-burn-rate
alerts, their promtool tests and the queries of the Error budget dashboard.

    from alert_rules import slo
    slo.rule_group(t)              # the `scalemart-slo` group: recording rules first, then the alerts
    slo.sli(t.slos, "5m", "availability", selector)   # what a dashboard queries for one recorded window

The SLI is an error ratio per `env`, recorded once per window the policy reads (5m … 3d) and over the objective's
window (28d), as `slo:sli_error:ratio_rate<window>{slo="<objective>"}` (level:metric:operations). The alerts and
the dashboard read those records, never the raw metrics, so a panel and its alert cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from alert_rules.rules import humanize_percentage
from alert_rules.signals import HTTP_DURATION_BUCKET, LB_RESPONSES, Scope, number
from alert_rules.thresholds import EVALUATION_INTERVAL, Objective, Slos, Thresholds, duration_seconds

GROUP = "scalemart-slo"
RECORD = "slo:sli_error:ratio_rate{window}"
# Contract with the exporters (roles/exporters): mtail on the lb hosts (job `lb-log`) counts every answer nginx
# gave, by status code (signals.LB_RESPONSES); the blackbox exporter probes the shop through the balancer.
SERVER_ERROR_CODE = 'code=~"5.."'
PROBE_SUCCESS = "probe_success"
BLACKBOX = 'job="blackbox"'
SHOP_PROBES = ("shop-ready", "shop-product")
HTTP_DURATION_COUNT = "scalemart_http_request_duration_seconds_count"
PURCHASE = ('route="/api/buy"', 'method="POST"')
ALERT_NAMES = {
    "availability": "ScaleMartAvailabilityBudgetBurn",
    "purchase_latency": "ScaleMartPurchaseLatencyBudgetBurn",
}
SUMMARIES = {
    "availability": "The shop is failing shoppers fast enough to spend its availability error budget.",
    "purchase_latency": "Purchases are slow often enough to spend the purchase latency error budget.",
}
WHAT = {
    "availability": "shop error ratio (5xx through the load balancer, or failed shop probes)",
    "purchase_latency": "share of purchases slower than {latency}",
}


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (30s, 1m, 72m, 6h, 1d)."""
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _le(seconds: float) -> str:
    # the `le` label as prometheus_client writes it (floatToGoString: repr of the float)
    return repr(float(seconds))


def _lb_error_ratio(sc: Scope) -> str:
    # 5xx / all answers; with no 5xx series yet 0 rather than nothing (as signals.ERROR_RATIO does)
    total = sc.sum_rate(LB_RESPONSES, by="env")
    return f"({sc.sum_rate(LB_RESPONSES, SERVER_ERROR_CODE, by='env')} or {total} * 0) / {total}"


def _probe_failure_ratio(sc: Scope) -> str:
    probes = sc.sel(PROBE_SUCCESS, BLACKBOX, f'probe=~"{"|".join(SHOP_PROBES)}"')
    return f"1 - avg by (env) (avg_over_time({probes}[{sc.window}]))"


def availability(sc: Scope) -> str:
    """The worse of the two views of the shop, each standing in for the other when it has no series.

    The lb answers count every shopper's request but cannot see the shop when nobody can reach nginx (no answer
    is no 5xx); the probes see that, but only twice a scrape. max() of the two burns budget when either fails,
    and `or` keeps the SLI alive while one exporter is down or not deployed yet. The sides are told apart by a
    `sli` label first: `or` would otherwise drop the probes wherever the lb side has the same env.
    """
    return (
        f'max by (env) (\n  label_replace({_lb_error_ratio(sc)}, "sli", "lb", "", "")\n'
        f'  or label_replace({_probe_failure_ratio(sc)}, "sli", "probes", "", "")\n)'
    )


def purchase_latency(sc: Scope, latency_seconds: float) -> str:
    """Share of purchases slower than the bucket `latency_seconds`: 1 - fast / all."""
    fast = sc.sum_rate(HTTP_DURATION_BUCKET, *PURCHASE, f'le="{_le(latency_seconds)}"', by="env")
    return f"1 - {fast}\n/ {sc.sum_rate(HTTP_DURATION_COUNT, *PURCHASE, by='env')}"


def sli_expr(name: str, obj: Objective, window: str) -> str:
    sc = Scope("", window)
    if name == "availability":
        return availability(sc)
    assert obj.latency_seconds is not None
    return purchase_latency(sc, obj.latency_seconds)


def record_name(window: str) -> str:
    return RECORD.format(window=window)


def sli(slos: Slos, window: str, name: str, selector: str = "") -> str:
    """The recorded SLI of objective `name` over `window` (a nominal window: 5m, 1h, 28d)."""
    return Scope(selector).sel(record_name(window), f'slo="{name}"')


def burn_rate(slos: Slos, window: str, name: str, selector: str = "") -> str:
    """How many times faster than the objective allows the budget is being spent over `window`."""
    return f"{sli(slos, window, name, selector)} / {number(slos.objectives()[name].budget)}"


def budget_left(slos: Slos, name: str, selector: str = "") -> str:
    """The share of the objective window's error budget not yet spent (negative: overspent)."""
    return f"1 - {burn_rate(slos, slos.objectives()[name].window, name, selector)}"


def probes(selector: str = "") -> str:
    """Every black-box probe's success (1/0), the shop's and the private ports'."""
    return f"min by (env, probe) ({Scope(selector).sel(PROBE_SUCCESS, BLACKBOX)})"


def recording_rules(slos: Slos) -> list[dict[str, Any]]:
    out = []
    for name, obj in slos.objectives().items():
        for window in [*slos.windows(), obj.window]:
            out.append(
                {
                    "record": record_name(window),
                    "expr": sli_expr(name, obj, duration(slos.seconds(window))),
                    "labels": {"slo": name},
                }
            )
    return out


@dataclass(frozen=True)
class Burn:
    """One alerting rule: an objective, a policy tier and its window pair."""

    slo: str
    obj: Objective
    policy: str
    severity: str
    long: str
    short: str
    burn_rate: float

    @property
    def threshold(self) -> float:
        return self.burn_rate * self.obj.budget

    @property
    def exact(self) -> Fraction:
        """The threshold exactly as the rule writes it."""
        return Fraction(number(self.threshold))

    @property
    def window_label(self) -> str:
        return f"{self.long}/{self.short}"


def burns(slos: Slos) -> list[Burn]:
    return [
        Burn(name, obj, policy_name, policy.severity, w.long, w.short, w.burn_rate)
        for name, obj in slos.objectives().items()
        for policy_name, policy in slos.burn_rate_alerts.items()
        for w in policy.windows
    ]


def description(slos: Slos, b: Burn) -> str:
    what = WHAT[b.slo].format(latency=f"{b.obj.latency_seconds or 0:g} s")
    spent = b.burn_rate * duration_seconds(b.long) / duration_seconds(b.obj.window)
    left = duration_seconds(b.obj.window) / b.burn_rate
    gone = f"{left / 86400:.1f} days" if left >= 2 * 86400 else f"{left / 3600:.0f} hours"
    lasted = f"{duration(slos.seconds(b.long))} and {duration(slos.seconds(b.short))}"
    return (
        f"{{{{ $labels.env }}}}: the {what} was {{{{ $value | humanizePercentage }}}} over the last "
        f"{duration(slos.seconds(b.long))}, and above {number(b.threshold * 100)}% over both {lasted}: "
        f"{b.burn_rate:g}x the rate a {number(b.obj.objective * 100)}% objective over {b.obj.window} allows "
        f"({spent * 100:.2g}% of its error budget per {b.long}; all of it in {gone} at this rate)."
    )


def alert_rules(slos: Slos, runbook_base: str) -> list[dict[str, Any]]:
    out = []
    for b in burns(slos):
        cond = f" > {number(b.threshold)}"
        out.append(
            {
                "alert": ALERT_NAMES[b.slo],
                "expr": f"{sli(slos, b.long, b.slo)}{cond}\nand {sli(slos, b.short, b.slo)}{cond}",
                "labels": {"severity": b.severity, "slo": b.slo, "window": b.window_label},
                "annotations": {
                    "summary": SUMMARIES[b.slo],
                    "description": description(slos, b),
                    "runbook_url": f"{runbook_base}/{ALERT_NAMES[b.slo]}.md",
                },
            }
        )
    return out


def rule_group(t: Thresholds, runbook_base: str) -> dict[str, Any]:
    # one group: the alerts are evaluated after the records they read, in the same evaluation
    return {"groups": [{"name": GROUP, "rules": [*recording_rules(t.slos), *alert_rules(t.slos, runbook_base)]}]}


# ----- promtool tests: per window pair one case that fires and one that must not -----

# Events per input-series step: big enough for every threshold to land between two whole counts.
EVENTS = 100000


@dataclass
class _Case:
    """Input for one objective: per step the total events and the bad ones (probe failures: 0..1 per probe)."""

    bad: list[Fraction]  # bad share per step, steps 1..n (step 0 is the counters' zero)
    step: int  # seconds between samples


def _ratio(case: _Case, at: int, window: int) -> Fraction:
    """The error ratio Prometheus computes over [at - window, at]: counters start at 0 at t=0, so rate()'s
    extrapolation is the same for the bad and the total counters and cancels; the increase between the first
    and last sample in the window is the sum of the steps after the first one."""
    first = max(0, (at - window) // case.step)
    steps = case.bad[first : at // case.step]
    return sum(steps, Fraction(0)) / len(steps)


def _series(slos: Slos, name: str, case: _Case) -> list[tuple[str, str]]:
    bad = [0] + [int(f * EVENTS) for f in case.bad]
    cumulative_bad = [sum(bad[: i + 1]) for i in range(len(bad))]
    cumulative_all = [i * EVENTS for i in range(len(bad))]
    env = {"env": "test"}
    if name == "availability":
        lb = {**env, "job": "lb-log", "instance": "lb-1:3903"}
        ok = [a - b for a, b in zip(cumulative_all, cumulative_bad, strict=True)]
        probes = [
            _sel(PROBE_SUCCESS, {**env, "job": "blackbox", "instance": "monitoring-1:9115", "probe": p})
            for p in SHOP_PROBES
        ]
        return [
            (_sel(LB_RESPONSES, {**lb, "code": "200"}), _values(ok)),
            (_sel(LB_RESPONSES, {**lb, "code": "503"}), _values(cumulative_bad)),
            *[(p, f"1x{len(bad) - 1}") for p in probes],
        ]
    app = {**env, "job": "scalemart-app", "instance": "app-1:8000", "route": "/api/buy", "method": "POST"}
    fast = [a - b for a, b in zip(cumulative_all, cumulative_bad, strict=True)]
    le = _le(slos.purchase_latency.latency_seconds or 0)
    return [
        (_sel(HTTP_DURATION_BUCKET, {**app, "le": le}), _values(fast)),
        (_sel(HTTP_DURATION_COUNT, app), _values(cumulative_all)),
    ]


def _sel(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _values(cumulative: list[int]) -> str:
    """promtool's expanding notation, one run per constant increment."""
    runs: list[str] = []
    i = 0
    while i < len(cumulative) - 1:
        inc = cumulative[i + 1] - cumulative[i]
        j = i + 1
        while j < len(cumulative) - 1 and cumulative[j + 1] - cumulative[j] == inc:
            j += 1
        runs.append(f"{cumulative[i]}+{inc}x{j - i}" if not runs else f"{cumulative[i] + inc}+{inc}x{j - i - 1}")
        i = j
    return " ".join(runs) or "0"


def _firing(slos: Slos, name: str, case: _Case, at: int) -> list[tuple[Burn, Fraction]]:
    """(rule, its $value: the long window's ratio) of every rule of `name` that fires at `at`."""
    out = []
    for b in burns(slos):
        if b.slo != name:
            continue
        ratios = [_ratio(case, at, slos.seconds(w)) for w in (b.long, b.short)]
        for r in ratios:
            if abs(float(r) - b.threshold) < 0.05 * b.threshold:
                raise ValueError(f"SLO test input for {name} {b.window_label} is within 5 % of its threshold")
        if all(r > b.exact for r in ratios):
            out.append((b, ratios[0]))
    return out


def _exp(slos: Slos, b: Burn, value: Fraction, runbook_base: str) -> dict[str, Any]:
    desc = (
        description(slos, b)
        .replace("{{ $labels.env }}", "test")
        .replace("{{ $value | humanizePercentage }}", humanize_percentage(float(value)))
    )
    return {
        "exp_labels": {"env": "test", "slo": b.slo, "severity": b.severity, "window": b.window_label},
        "exp_annotations": {
            "summary": SUMMARIES[b.slo],
            "description": desc,
            "runbook_url": f"{runbook_base}/{ALERT_NAMES[b.slo]}.md",
        },
    }


def _group(slos: Slos, name: str, case: _Case, at: int, comment: str, runbook_base: str) -> dict[str, Any]:
    exp = [_exp(slos, b, v, runbook_base) for b, v in _firing(slos, name, case, at)]
    return {
        "name": comment,
        "interval": duration(case.step),
        "input_series": [{"series": s, "values": v} for s, v in _series(slos, name, case)],
        "alert_rule_test": [{"eval_time": duration(at), "alertname": ALERT_NAMES[name], "exp_alerts": exp}],
    }


def _minutes(seconds: int) -> int:
    # eval times on whole minutes: the test file evaluates the rules once a minute
    return math.ceil(seconds / 60) * 60


def _checked(
    slos: Slos, name: str, case: _Case, at: int, b: Burn, fires: bool, comment: str, runbook_base: str
) -> dict[str, Any]:
    group = _group(slos, name, case, at, comment, runbook_base)
    fired = {e["exp_labels"]["window"] for e in group["alert_rule_test"][0]["exp_alerts"]}
    if (b.window_label in fired) != fires or (not fires and _ratio(case, at, slos.seconds(b.long)) <= b.exact):
        raise ValueError(f"SLO test input for {name} {b.window_label} does not {'fire' if fires else 'isolate'} it")
    return group


def _recovered(slos: Slos, name: str, b: Burn, step: int, runbook_base: str) -> dict[str, Any]:
    """A burn, then healthy for one step longer than the short window: over the long window the ratio is still
    above the threshold, over the short one 0, so this pair must not fire. The burn is as strong as it must
    be for that (the first strength whose ratios are clear of every threshold); the input stays within the
    long window where it can, as promtool evaluates every rule at every step."""
    long, short = slos.seconds(b.long), slos.seconds(b.short)
    healthy_for = short + step
    at = _minutes(healthy_for + max(step, healthy_for * 3 // 2))
    burned_for = at - healthy_for
    in_long = min(at, long)
    burned_in_long = max(0, burned_for - max(0, at - long))
    if burned_in_long == 0:
        raise ValueError(f"{name} {b.window_label}: the long window is too short to outlast the short one")
    for strength in (Fraction(6, 5), Fraction(3, 2), 2, 3, 5, 8):
        bad = Fraction(math.ceil(b.exact * strength * in_long / burned_in_long * EVENTS), EVENTS)
        if bad > 1:
            break
        case = _Case([bad] * (burned_for // step) + [Fraction(0)] * (healthy_for // step), step)
        try:
            return _checked(
                slos,
                name,
                case,
                at,
                b,
                False,
                f"{ALERT_NAMES[name]} {b.window_label} stops once the last {duration(short)} are healthy",
                runbook_base,
            )
        except ValueError:
            continue
    raise ValueError(f"{name} {b.window_label}: no burn isolates the short window")


def test_groups(t: Thresholds, runbook_base: str) -> list[dict[str, Any]]:
    slos = t.slos
    secs = {w: slos.seconds(w) for w in slos.windows()}
    # compressed windows are whole evaluation intervals (Slos.seconds), not always whole minutes
    step = 60 if all(s % 60 == 0 for s in secs.values()) else int(duration_seconds(EVALUATION_INTERVAL))
    groups = []
    for name in slos.objectives():
        healthy = _Case([Fraction(0)] * 20, step)
        groups.append(
            _group(slos, name, healthy, 20 * step, f"{ALERT_NAMES[name]} stays quiet on a healthy shop", runbook_base)
        )
        for b in burns(slos):
            if b.slo != name:
                continue
            short = secs[b.short]
            bad = Fraction(math.floor(b.exact * Fraction(9, 5) * EVENTS), EVENTS)
            # burning at 1.8x the threshold, below the next harsher pair's: this pair fires (and those it also breaks)
            at = _minutes(short + 10 * 60)
            groups.append(
                _checked(
                    slos,
                    name,
                    _Case([bad] * (at // step), step),
                    at,
                    b,
                    True,
                    f"{ALERT_NAMES[name]} {b.window_label} fires at {float(bad):.4%}",
                    runbook_base,
                )
            )
            groups.append(_recovered(slos, name, b, step, runbook_base))
    return [*groups, *probe_groups(slos, runbook_base)]


def probe_groups(slos: Slos, runbook_base: str) -> list[dict[str, Any]]:
    """The availability SLI from the probes alone (no lb answers: mtail down or not deployed): a failing shop
    probe burns the budget, a failing private-port probe does not."""
    name, minutes = "availability", 40
    labels = {"env": "test", "job": "blackbox", "instance": "monitoring-1:9115"}
    failing = [
        (_sel(PROBE_SUCCESS, {**labels, "probe": "shop-ready"}), f"0x{minutes}"),
        (_sel(PROBE_SUCCESS, {**labels, "probe": "shop-product"}), f"1x{minutes}"),
    ]
    tcp = [
        (_sel(PROBE_SUCCESS, {**labels, "probe": "shop-ready"}), f"1x{minutes}"),
        (_sel(PROBE_SUCCESS, {**labels, "probe": "tcp"}), f"0x{minutes}"),
    ]
    # one of the two shop probes failing throughout: the SLI is 0.5 over every window, every pair fires
    every = [_exp(slos, b, Fraction(1, 2), runbook_base) for b in burns(slos) if b.slo == name]
    return [
        {
            "name": f"{ALERT_NAMES[name]} {comment}",
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": f"{minutes}m", "alertname": ALERT_NAMES[name], "exp_alerts": exp}],
        }
        for comment, series, exp in (
            ("fires on a failing shop probe without lb answers", failing, every),
            ("ignores a failing tcp probe", tcp, []),
        )
    ]


def alert_names() -> list[str]:
    return sorted(ALERT_NAMES.values())
