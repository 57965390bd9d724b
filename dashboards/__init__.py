"""Dashboards as code (grafanalib); `python -m dashboards build --out build/dashboards`.

Writes Grafana JSON (for operators who run their own Grafana) and its Perses conversion in perses/
(what the perses role provisions; dashboards/perses.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder

from alert_rules import thresholds as thresholds_mod
from dashboards import alerts_security, api_performance, business, infrastructure, overview, perses, slo

MODULES = (overview, api_performance, infrastructure, business, alerts_security, slo)


def render_all(thresholds_path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """{uid: dashboard JSON as a dict}; the thresholds file is validated first."""
    t = thresholds_mod.load(thresholds_path)
    out = {}
    for module in MODULES:
        data = json.loads(json.dumps(module.build(t).to_json_data(), cls=DashboardEncoder))
        out[module.UID] = data
    return out


def panel_expressions(data: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query target in a dashboard JSON."""
    for panel in data.get("panels", []):
        for tgt in panel.get("targets", []) or []:
            if tgt.get("expr"):
                yield panel.get("title", "?"), tgt.get("refId", "?"), tgt["expr"]


def build(out: Path, thresholds_path: str | Path | None = None, perses_home: Path | None = None) -> list[Path]:
    """Grafana JSON in `out`, Perses resources in `out/perses`; a dashboard that does not convert writes nothing."""
    rendered = render_all(thresholds_path)  # validates the thresholds before anything is written
    with tempfile.TemporaryDirectory(prefix="perses-build-") as tmp:
        staged = perses.build(rendered, Path(tmp), perses_home or perses.PERSES_HOME)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for uid, data in rendered.items():
            path = out / f"{uid}.json"
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            written.append(path)
        target = out / "perses"
        target.mkdir(exist_ok=True)
        for path in staged:
            shutil.copyfile(path, target / path.name)
            written.append(target / path.name)
        for stale in sorted(set(target.glob("*.json")) - set(written)):
            stale.unlink()
    return written
