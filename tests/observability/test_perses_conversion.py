"""The Grafana JSON converted for Perses by the real `percli migrate` and `percli lint` (.tools/perses, built
by `make bootstrap`): every panel carried, one project, every query on the provisioned datasource, the
thresholds kept; a panel the conversion cannot carry fails the build, naming the dashboard and the panel,
and writes nothing."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alert_rules import thresholds
from dashboards import build, perses, render_all
from tests.observability.conftest import PYTHON, ROOT


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if not (perses.PERSES_HOME / "bin" / "percli").exists():
        pytest.fail(f"{perses.PERSES_HOME}/bin/percli is missing: run `make bootstrap`")
    out = tmp_path_factory.mktemp("dashboards")
    build(out)
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "perses").glob("*.json"))}


def _dashboards(converted: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in converted.values() if r["kind"] == "Dashboard"}


def _panels(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["spec"]["display"]["name"]: p for p in dashboard["spec"]["panels"].values()}


def test_the_cli_writes_a_project_a_datasource_and_every_dashboard(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(PYTHON), "-m", "dashboards", "build", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "perses").glob("*.json"))
    assert names == sorted(
        [
            f"project-{perses.PROJECT}.json",
            f"globaldatasource-{perses.DATASOURCE}.json",
            *(f"dashboard-{uid}.json" for uid in render_all()),
        ]
    )


def test_every_grafana_panel_is_carried_with_its_queries(converted: dict[str, dict[str, Any]]) -> None:
    grafana = render_all()
    for name, dashboard in _dashboards(converted).items():
        source = [p for p in grafana[name]["panels"] if p["type"] != "row"]
        panels = _panels(dashboard)
        assert sorted(panels) == sorted(p["title"] for p in source), name
        for p in source:
            queries = [q["spec"]["plugin"]["spec"]["query"] for q in panels[p["title"]]["spec"].get("queries", [])]
            assert queries == [t["expr"] for t in p["targets"]], f"{name} / {p['title']}"


def test_one_project_no_datasource_variable_every_query_on_the_provisioned_datasource(
    converted: dict[str, dict[str, Any]],
) -> None:
    ref = {"kind": "PrometheusDatasource", "name": perses.DATASOURCE}
    for name, dashboard in _dashboards(converted).items():
        assert dashboard["metadata"]["project"] == perses.PROJECT, name
        variables = {v["spec"]["name"]: v for v in dashboard["spec"]["variables"]}
        assert sorted(variables) == ["env"], f"{name}: variables {sorted(variables)}"
        assert variables["env"]["spec"]["plugin"]["kind"] == "PrometheusLabelValuesVariable"
        assert variables["env"]["spec"]["plugin"]["spec"]["datasource"] == ref, name
        for panel in dashboard["spec"]["panels"].values():
            for query in panel["spec"].get("queries", []):
                assert query["spec"]["plugin"]["spec"]["datasource"] == ref, f"{name} / {panel['spec']['display']}"
    assert "${datasource}" not in json.dumps(converted)


def test_stat_thresholds_and_the_instant_table_survive(converted: dict[str, dict[str, Any]]) -> None:
    t = thresholds.load()
    overview = _panels(_dashboards(converted)["scalemart-overview"])
    steps = overview["Error ratio (5xx)"]["spec"]["plugin"]["spec"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [0, t.api.error_ratio.warning, t.api.error_ratio.critical]
    infra = _panels(_dashboards(converted)["scalemart-infrastructure"])
    assert infra["Scrape targets"]["spec"]["plugin"]["kind"] == "Table"  # Perses asks a table for instant values


def test_the_datasource_is_the_default_and_leaves_its_url_to_the_role(converted: dict[str, dict[str, Any]]) -> None:
    ds = converted[f"globaldatasource-{perses.DATASOURCE}.json"]
    assert ds["spec"]["default"] is True and ds["spec"]["plugin"]["kind"] == "PrometheusDatasource"
    assert "proxy" not in ds["spec"]["plugin"]["spec"]


def test_a_panel_perses_cannot_carry_fails_naming_the_dashboard_and_the_panel(tmp_path: Path) -> None:
    grafana = render_all()
    broken = copy.deepcopy(grafana["scalemart-overview"])
    broken["panels"].append(
        {"id": 999, "type": "news", "title": "Grafana news", "gridPos": {"x": 0, "y": 99, "w": 6, "h": 4}}
    )
    with pytest.raises(perses.ConversionError) as err:
        perses.build({"scalemart-overview": broken}, tmp_path)
    message = str(err.value)
    assert "dashboard 'ScaleMart Overview'" in message and "panel 'Grafana news'" in message, message
    assert "'news'" in message and "use a timeseries, stat, table or bargauge panel" in message, message
    assert not list(tmp_path.iterdir()), "a refused dashboard wrote files"


def test_a_failed_conversion_leaves_the_previous_build_in_place(tmp_path: Path, monkeypatch) -> None:
    build(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "perses").glob("*.json")}

    def refuse(perses_doc: dict[str, Any], grafana: dict[str, Any]) -> dict[str, Any]:
        raise perses.ConversionError(f"dashboard {grafana['title']!r}: refused for this test")

    monkeypatch.setattr(perses, "post_step", refuse)
    with pytest.raises(perses.ConversionError):
        build(tmp_path)
    assert {p: p.read_bytes() for p in (tmp_path / "perses").glob("*.json")} == before
