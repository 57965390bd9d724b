"""Dashboards as code: six dashboards, datasource and env variables, threshold lines from the thresholds file."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from alert_rules import thresholds
from alert_rules.coverage import metric_names
from dashboards import panel_expressions, render_all
from tests.observability.conftest import PYTHON, ROOT

TITLES = {
    "ScaleMart Overview",
    "API Performance",
    "Infrastructure Health",
    "Business Metrics",
    "Alerts & Security",
    "Error budget",
}


def panel(data: dict, title: str) -> dict:
    matches = [p for p in data["panels"] if p.get("title") == title]
    assert len(matches) == 1, f"{data['title']}: expected one panel titled {title!r}"
    return matches[0]


def steps(p: dict) -> list:
    return [(s["color"], s["value"]) for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_make_dashboards_cli_writes_one_json_per_dashboard(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(PYTHON), "-m", "dashboards", "build", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == len(TITLES)
    loaded = [json.loads(f.read_text()) for f in files]
    assert {d["title"] for d in loaded} == TITLES
    assert len({d["uid"] for d in loaded}) == len(TITLES)


def test_every_dashboard_has_datasource_and_env_variables() -> None:
    for data in render_all().values():
        variables = {v["name"]: v for v in data["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["env"]["type"] == "query"
        assert variables["env"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_query_uses_the_datasource_variable_and_filters_on_env() -> None:
    for data in render_all().values():
        for p in data["panels"]:
            if p.get("type") == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            for target in p["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", p["title"]
        for title, _, expr in panel_expressions(data):
            for name in metric_names(expr) - {"ALERTS"}:
                assert re.search(rf'\b{name}\{{env=~"\$env"', expr), (
                    f"{data['title']} / {title}: {name} is not filtered by the env variable"
                )


def test_panels_fit_the_grid_without_overlap() -> None:
    for data in render_all().values():
        cells: set[tuple[int, int]] = set()
        for p in data["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, p["title"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{data['title']}: {p['title']} overlaps another panel"
                    cells.add((x, y))


def test_threshold_lines_come_from_the_thresholds_file(tmp_path: Path) -> None:
    t = thresholds.load()
    dash = render_all()
    api = dash["scalemart-api-performance"]
    assert steps(panel(api, "Error ratio by instance")) == [
        ("green", None),
        ("orange", t.api.error_ratio.warning),
        ("red", t.api.error_ratio.critical),
    ]
    assert panel(api, "Latency p95 vs SLO")["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    # low is bad: red below critical, orange below warning, green above
    assert steps(panel(api, "Cache hit ratio")) == [
        ("red", None),
        ("orange", t.datastores.cache_hit_ratio.critical),
        ("green", t.datastores.cache_hit_ratio.warning),
    ]
    infra = dash["scalemart-infrastructure"]
    assert ("red", t.hosts.cpu_ratio.critical) in steps(panel(infra, "CPU usage by host"))
    assert ("orange", t.worker.queue_length.warning) in steps(panel(infra, "Queue length"))

    # change the file: the dashboards follow, nothing else to edit
    data = yaml.safe_load(thresholds.DEFAULT_PATH.read_text())
    data["api"]["error_ratio"] = {"warning": 0.03, "critical": 0.07, "for": "5m"}
    data["hosts"]["cpu_ratio"] = {"warning": 0.6, "critical": 0.8, "for": "10m"}
    custom = tmp_path / "thresholds.yml"
    custom.write_text(yaml.safe_dump(data))
    changed = render_all(custom)
    assert steps(panel(changed["scalemart-api-performance"], "Error ratio by instance")) == [
        ("green", None),
        ("orange", 0.03),
        ("red", 0.07),
    ]
    assert ("red", 0.8) in steps(panel(changed["scalemart-infrastructure"], "CPU usage by host"))


def test_business_dashboard_has_the_sales_panels() -> None:
    business = render_all()["scalemart-business"]
    titles = {p["title"] for p in business["panels"]}
    assert {"Orders per minute", "Revenue per hour", "Stock left by product", "Flash-sale conversion"} <= titles
    infra = {p["title"] for p in render_all()["scalemart-infrastructure"]["panels"]}
    assert {"Redis", "MongoDB", "Order worker", "Load balancer (nginx)", "Hosts"} <= infra
