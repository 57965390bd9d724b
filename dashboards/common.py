"""Dashboard scaffolding: variables, panel factories and threshold steps from the thresholds file.

A panel of what an alert watches takes a signal (alert_rules/signals.py), never an expression and a
threshold apart: `watch()` queries the signal and draws the lines of the signal's own thresholds key.
"""

from __future__ import annotations

from typing import Any

from grafanalib.core import (
    Dashboard,
    GridPos,
    RowPanel,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

from alert_rules.signals import Signal
from alert_rules.thresholds import Threshold, Thresholds

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
COLORS = {"info": "blue", "warning": "orange", "critical": "red"}
WIDTH = 24


def variables() -> Templating:
    return Templating(
        list=[
            Template(
                name="datasource", label="Prometheus", type="datasource", query="prometheus", default="Prometheus"
            ),
            Template(
                name="env",
                label="Environment",
                type="query",
                dataSource=DATASOURCE,
                query="label_values(up, env)",
                refresh=2,
                includeAll=True,
                allValue=".*",
                default="All",
                sort=1,
            ),
        ]
    )


def steps(th: Threshold | None) -> list[dict[str, Any]]:
    """Grafana threshold steps from a thresholds-file entry: green, then each tier's colour."""
    if th is None or not th.values:
        return [{"color": "green", "value": None}]
    tiers = th.tiers()
    if th.low_is_bad:
        # colours run from the harshest (lowest) tier up to green above the mildest
        out: list[dict[str, Any]] = [{"color": COLORS[tiers[-1][0]], "value": None}]
        for i in range(len(tiers) - 1, 0, -1):
            out.append({"color": COLORS[tiers[i - 1][0]], "value": tiers[i][1]})
        out.append({"color": "green", "value": tiers[0][1]})
        return out
    return [{"color": "green", "value": None}] + [{"color": COLORS[s], "value": v} for s, v in tiers]


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE, instant=instant)


class Layout:
    """Places panels left to right, wrapping at the dashboard width; rows start a new line."""

    def __init__(self) -> None:
        self.x = self.y = 0
        self.row_h = 0
        self.panels: list[Any] = []

    def add(self, panel: Any, w: int = 12, h: int = 8) -> None:
        if self.x + w > WIDTH:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel.gridPos = GridPos(h=h, w=w, x=self.x, y=self.y)
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append(RowPanel(title=title, gridPos=GridPos(h=1, w=WIDTH, x=0, y=self.y)))
        self.y += 1


def timeseries(
    title: str,
    targets: list[Target],
    unit: str = "short",
    th: Threshold | None = None,
    description: str = "",
    **kw: Any,
) -> TimeSeries:
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=targets,
        unit=unit,
        description=description,
        thresholds=steps(th),
        thresholdsStyleMode="line" if th is not None and th.values else "off",
        **kw,
    )


def stat(
    title: str, expr: str, unit: str = "short", th: Threshold | None = None, description: str = "", **kw: Any
) -> Stat:
    return Stat(
        title=title,
        dataSource=DATASOURCE,
        targets=[target(expr)],
        format=unit,
        thresholds=steps(th),
        description=description,
        reduceCalc="lastNotNull",
        graphMode="area",
        colorMode="value",
        **kw,
    )


def threshold_of(signal: Signal, t: Thresholds) -> Threshold:
    if signal.key is None:
        raise ValueError(f"signal {signal.name} has no thresholds key: there is no line to draw")
    return t[signal.key]


def watch(title: str, signal: Signal, t: Thresholds, unit: str, legend: str, description: str = "") -> TimeSeries:
    """What an alert watches, over time, with the alert's thresholds as lines: both from `signal`."""
    return timeseries(title, [target(signal.panel(), legend)], unit, threshold_of(signal, t), description)


def worst(title: str, signal: Signal, t: Thresholds, unit: str, description: str = "") -> Stat:
    """The worst series of what an alert watches now (the highest; the lowest where low is bad), coloured
    by the alert's thresholds."""
    th = threshold_of(signal, t)
    return stat(title, f"{'min' if th.low_is_bad else 'max'}({signal.panel()})", unit, th, description)


def table(title: str, expr: str, description: str = "") -> Table:
    return Table(
        title=title,
        dataSource=DATASOURCE,
        targets=[target(expr, instant=True)],
        description=description,
        transformations=[{"id": "labelsToFields", "options": {}}],
    )


def dashboard(title: str, uid: str, layout: Layout, description: str, tags: list[str]) -> Dashboard:
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["scalemart", *tags],
        templating=variables(),
        panels=layout.panels,
        time=Time("now-6h", "now"),
        refresh="30s",
        timezone="utc",
        editable=False,
    ).auto_panel_ids()
