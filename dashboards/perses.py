"""Perses dashboards from the generated Grafana JSON: `percli migrate` offline, a small post-step, `percli lint`.

The conversion is Perses' own (its CUE migration schemas, shipped beside the binary by `make bootstrap`
in `.tools/perses`). The post-step does only what the conversion cannot know:
- every dashboard in one project, PROJECT;
- Grafana's datasource variable dropped (Perses picks datasources per query, not per dashboard);
- every query and variable on the provisioned global Prometheus datasource, DATASOURCE;
- a stat whose Grafana unit Perses has no name for shows two decimals, not every digit of a rate;
- instant queries stay last values: Perses' Table asks for instant queries itself, and a bar gauge or stat
  shows the last value of the range (the conversion's `calculation`); any other instant target fails.
A panel, query or variable the conversion could not carry fails the build, naming the dashboard and
the panel: nothing is silently dropped. The project and the datasource are written as resources of
their own (one per file: Perses' provisioning loads only the first document of a file); the perses
role fills in the datasource's URL, which only the inventory knows.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PERSES_HOME = ROOT / ".tools" / "perses"
# The one home of these names: the perses role and the tests read them from the built resources.
PROJECT = "scalemart"
DATASOURCE = "prometheus"
DATASOURCE_REF = {"kind": "PrometheusDatasource", "name": DATASOURCE}

# What `percli migrate` puts where it could not convert (internal/api/migrate in the Perses module).
UNSUPPORTED_PANEL = "Migration from Grafana not supported"
UNSUPPORTED_QUERY = "migration_from_grafana_not_supported"
UNSUPPORTED_VARIABLE = ["grafana", "migration", "not", "supported"]
GRAFANA_DATASOURCE_VARIABLE = "datasource"
PLAIN_NUMBER = {"unit": "decimal", "decimalPlaces": 2}
# Panel calculations that show one value per series: the same as Grafana's instant query.
LAST_VALUE = ("last", "last-number")


class ConversionError(ValueError):
    """A Grafana dashboard that does not convert: names the dashboard, the panel and the fix."""


def schema_flags(home: Path = PERSES_HOME, datasources: bool = True) -> list[str]:
    """percli's --schemas.* flags (migrate takes no datasources schemas, lint does)."""
    schemas = home / "cue" / "schemas"
    flags = [
        f"--schemas.charts={schemas / 'panels'}",
        f"--schemas.queries={schemas / 'queries'}",
        f"--schemas.variables={schemas / 'variables'}",
    ]
    return [*flags, f"--schemas.datasources={schemas / 'datasources'}"] if datasources else flags


def percli(home: Path = PERSES_HOME) -> Path:
    binary = home / "bin" / "percli"
    if not binary.exists():
        raise ConversionError(f"{binary} is missing: run `make bootstrap` (it builds Perses and percli once)")
    return binary


def _run(args: list[str], what: str, home: Path) -> str:
    proc = subprocess.run([str(percli(home)), *args], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise ConversionError(f"{what}: percli {args[0]} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def migrate(grafana: dict[str, Any], home: Path = PERSES_HOME) -> dict[str, Any]:
    """Perses' own offline migration of one Grafana dashboard."""
    with tempfile.TemporaryDirectory(prefix="perses-migrate-") as tmp:
        path = Path(tmp) / "grafana.json"
        path.write_text(json.dumps(grafana), encoding="utf-8")
        out = _run(
            ["migrate", "--file", str(path), "--output", "json", *schema_flags(home, datasources=False)],
            f"dashboard {grafana.get('title')!r}",
            home,
        )
    return dict(json.loads(out))


def _queries(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for query in spec.get("queries") or []:
        yield query["spec"]["plugin"]


def post_step(perses: dict[str, Any], grafana: dict[str, Any]) -> dict[str, Any]:
    """The converted dashboard in PROJECT, on DATASOURCE, with nothing unconverted left in it."""
    title = grafana.get("title", "?")
    # Grafana panels by title, rows' children included: their `instant` flags and types.
    by_title: dict[str, dict[str, Any]] = {}
    for panel in grafana.get("panels") or []:
        for p in [panel, *(panel.get("panels") or [])]:
            by_title.setdefault(p.get("title", ""), p)
    problems: list[str] = []
    for _key, panel in sorted(perses["spec"].get("panels", {}).items()):
        name = panel["spec"]["display"]["name"]
        plugin = panel["spec"]["plugin"]
        source = by_title.get(name, {})
        if plugin["kind"] == "Markdown" and UNSUPPORTED_PANEL in str(plugin.get("spec", {}).get("text", "")):
            problems.append(
                f"panel {name!r} (Grafana type {source.get('type', '?')!r}) has no Perses counterpart: "
                "use a timeseries, stat, table or bargauge panel"
            )
            continue
        if plugin["kind"] == "StatChart" and "format" not in plugin.get("spec", {}):
            # Units Perses has no name for (Grafana's reqps, short) would print every digit of a rate.
            plugin.setdefault("spec", {})["format"] = dict(PLAIN_NUMBER)
        targets = source.get("targets") or []
        for i, query in enumerate(_queries(panel["spec"])):
            if query.get("spec", {}).get("query") == UNSUPPORTED_QUERY:
                problems.append(f"panel {name!r} query {i}: not a Prometheus query Perses can carry")
                continue
            query.setdefault("spec", {})["datasource"] = dict(DATASOURCE_REF)
        last_value = plugin["kind"] == "Table" or plugin.get("spec", {}).get("calculation") in LAST_VALUE
        if any(t.get("instant") for t in targets) and not last_value:
            problems.append(
                f"panel {name!r}: an instant query on a {plugin['kind']} would show a range; "
                "use a table, stat or bar gauge panel"
            )
    variables = []
    for var in perses["spec"].get("variables") or []:
        spec = var.get("spec", {})
        name = spec.get("name")
        if name == GRAFANA_DATASOURCE_VARIABLE:
            continue
        plugin = spec.get("plugin", {})
        if plugin.get("spec", {}).get("values") == UNSUPPORTED_VARIABLE:
            problems.append(f"variable {name!r} did not convert: use a Prometheus label-values variable")
            continue
        if str(plugin.get("kind", "")).startswith("Prometheus"):
            plugin.setdefault("spec", {})["datasource"] = dict(DATASOURCE_REF)
        variables.append(var)
    if problems:
        raise ConversionError(f"dashboard {title!r} ({grafana.get('uid')}): " + "; ".join(problems))
    perses["spec"]["variables"] = variables
    perses["metadata"]["project"] = PROJECT
    return perses


def project() -> dict[str, Any]:
    return {"kind": "Project", "metadata": {"name": PROJECT}, "spec": {"display": {"name": "ScaleMart"}}}


def datasource() -> dict[str, Any]:
    """The global Prometheus datasource every query names; the perses role adds `proxy` with the URL."""
    return {
        "kind": "GlobalDatasource",
        "metadata": {"name": DATASOURCE},
        "spec": {
            "display": {"name": "Prometheus"},
            "default": True,
            "plugin": {"kind": "PrometheusDatasource", "spec": {}},
        },
    }


def lint(path: Path, home: Path = PERSES_HOME) -> None:
    _run(["lint", "--file", str(path), *schema_flags(home)], f"{path.name}", home)


def file_name(resource: dict[str, Any]) -> str:
    """kind-name.json: the name the perses role gives each provisioning file too."""
    return f"{resource['kind'].lower()}-{resource['metadata']['name']}.json"


def build(grafana_dashboards: dict[str, dict[str, Any]], out: Path, home: Path = PERSES_HOME) -> list[Path]:
    """Convert every dashboard first, then write and lint each file into `out` (a staging folder: the
    caller moves the files only when all passed). The datasource is linted by the perses role, once its
    URL from the inventory is in."""
    converted = [post_step(migrate(data, home), data) for data in grafana_dashboards.values()]
    written = []
    for resource in [project(), datasource(), *converted]:
        path = out / file_name(resource)
        path.write_text(json.dumps(resource, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if resource["kind"] != "GlobalDatasource":
            lint(path, home)
        written.append(path)
    return written
