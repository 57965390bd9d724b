"""Error budget: per objective, the budget left over its window, the burn rate over every window the burn-rate
alerts read, and the black-box probes. Every query reads the SLO recording rules (alert_rules/slo.py), so the
lines are exactly what ScaleMart*BudgetBurn compares."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules import slo
from alert_rules.signals import PANEL_SELECTOR
from alert_rules.thresholds import Thresholds
from dashboards.common import Layout, dashboard, target, timeseries

TITLE = "Error budget"
UID = "scalemart-slo"


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    names = list(t.slos.objectives())
    lay.row("Error budget")
    lay.add(
        timeseries(
            f"Error budget left ({', '.join(sorted({o.window for o in t.slos.objectives().values()}))})",
            [target("\nor ".join(slo.budget_left(t.slos, n, PANEL_SELECTOR) for n in names), "{{env}} {{slo}}")],
            "percentunit",
            description="Share of each objective's error budget not yet spent over its window "
            "(1 = untouched, 0 = spent, below 0 = the objective is broken).",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Probe success by probe",
            [target(slo.probes(PANEL_SELECTOR), "{{env}} {{probe}}")],
            "short",
            description="The blackbox exporter's probes (1 = success). shop-ready and "
            "shop-product count for availability; the others do not.",
        ),
        w=12,
    )
    lay.row("Burn rates: 1 spends the budget exactly over the objective's window")
    for window in t.slos.windows():
        lay.add(
            timeseries(
                f"Burn rate over {window}",
                [
                    target(
                        "\nor ".join(slo.burn_rate(t.slos, window, n, PANEL_SELECTOR) for n in names), "{{env}} {{slo}}"
                    )
                ],
                "short",
                description=f"Error ratio over {window} / (1 - objective). The burn-rate alerts "
                "compare it with the policy in thresholds.yml slos.burn_rate_alerts.",
            ),
            w=8,
        )
    return dashboard(TITLE, UID, lay, "SLOs: error budget left, burn rates and the black-box probes.", ["slo"])
