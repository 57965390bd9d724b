"""A Perses server as the tests see it: log in and list the dashboards (ops.browser), and run each panel
query through the server's datasource proxy. Shared by the no-data check and the verify suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from alert_rules import coverage
from dashboards.perses import DATASOURCE
from ops.browser import LOGIN, dashboards, login

__all__ = ["LOGIN", "PanelQuery", "dashboards", "login", "panel_queries", "run"]


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # display name, as the UI shows it
    panel: str
    index: int
    expr: str
    instant: bool  # a Table panel asks for the last value only

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.index}]"


def panel_queries(dashboard: dict[str, Any]) -> Iterator[PanelQuery]:
    title = dashboard["spec"].get("display", {}).get("name") or dashboard["metadata"]["name"]
    for panel in dashboard["spec"].get("panels", {}).values():
        spec = panel["spec"]
        for i, query in enumerate(spec.get("queries") or []):
            plugin = query["spec"]["plugin"]
            yield PanelQuery(
                title, spec["display"]["name"], i, plugin["spec"]["query"], spec["plugin"]["kind"] == "Table"
            )


def run(client: httpx.Client, query: PanelQuery, env: str = ".*", end: float | None = None) -> dict[str, Any]:
    """The query through /proxy/globaldatasources/<DATASOURCE>, as a panel sends it ($env substituted)."""
    expr = coverage.substitute(query.expr.replace("${env}", env).replace("$env", env))
    end = end or time.time()
    proxy = f"/proxy/globaldatasources/{DATASOURCE}/api/v1"
    if query.instant:
        r = client.get(f"{proxy}/query", params={"query": expr, "time": end})
    else:
        r = client.get(f"{proxy}/query_range", params={"query": expr, "start": end - 600, "end": end, "step": 15})
    body: dict[str, Any] = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    assert r.status_code == 200 and body.get("status") == "success", (
        f"{query.where}: {r.status_code} {body.get('error') or r.text[:300]}"
    )
    return body
