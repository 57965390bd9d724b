"""Offline dependency audit: installed versions against vulnerability records in the OSV format.

The machine has no vulnerability database of its own, so the user supplies one (`make ci` reads
$SCALEMART_VULN_DATA): one OSV record as JSON, a JSON list of them, a folder of `*.json` records, or a zip
of them as OSV publishes each ecosystem (`PyPI/all.zip`). Only PyPI entries count; an affected version is
one listed in `versions`, or inside an ECOSYSTEM range (`introduced` / `fixed` / `last_affected`).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


class VulnDataError(RuntimeError):
    """The vulnerability data cannot be read; the message names the file and the fix."""


def _records(value: Any, source: str) -> Iterator[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict) or "id" not in item:
            raise VulnDataError(
                f"{source}: not an OSV record (an object with `id` and `affected`) — fix: give "
                "OSV JSON records, e.g. from the ecosystem export PyPI/all.zip"
            )
        yield item


def _parse(text: bytes | str, source: str) -> list[dict[str, Any]]:
    try:
        return list(_records(json.loads(text), source))
    except json.JSONDecodeError as exc:
        raise VulnDataError(f"{source} is not JSON ({exc}) — fix: give OSV JSON records") from None


def _read(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        return [r for f in sorted(path.rglob("*.json")) for r in _parse(f.read_bytes(), str(f))]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return [r for n in sorted(zf.namelist()) if n.endswith(".json") for r in _parse(zf.read(n), f"{path}:{n}")]
    return _parse(path.read_bytes(), str(path))


def _pypi(record: dict[str, Any]) -> bool:
    affected = record.get("affected")
    return isinstance(affected, list) and any(
        isinstance(a, dict) and isinstance(a.get("package"), dict) and a["package"].get("ecosystem") == "PyPI"
        for a in affected
    )


def load(path: Path) -> list[dict[str, Any]]:
    """Every OSV record in `path` (a .json file, a folder of them, or a zip of them); at least one for PyPI.

    Data without a PyPI record (an empty folder, `[]`, a zip without .json, another ecosystem's export) would
    match nothing and let any installed version pass, so it is refused, never counted as a clean audit.
    """
    if not path.exists():
        raise VulnDataError(f"{path}: no such file — fix: point SCALEMART_VULN_DATA at an OSV file, folder or zip")
    records = _read(path)
    if not any(_pypi(r) for r in records):
        raise VulnDataError(
            f"SCALEMART_VULN_DATA={path} holds {len(records)} OSV records, none for a PyPI package, so an audit "
            "against it would pass whatever is installed — fix: point SCALEMART_VULN_DATA at a data file with "
            "PyPI records (OSV's PyPI/all.zip, a folder of its *.json, or a JSON list of records)"
        )
    return records


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def in_range(version: Version, events: Iterable[dict[str, str]]) -> bool:
    """OSV's range evaluation: walk the events in version order; `introduced` opens, `fixed` closes."""
    keyed = []
    for event in events:
        kind, raw = next(iter(event.items()))
        at = Version("0") if raw == "0" else _version(raw)
        if at is not None and kind in {"introduced", "fixed", "last_affected"}:
            keyed.append((at, kind))
    affected = False
    for at, kind in sorted(keyed, key=lambda e: (e[0], e[1] != "introduced")):
        if kind == "introduced" and version >= at:
            affected = True
        elif kind == "fixed" and version >= at:
            affected = False
        elif kind == "last_affected" and version > at:
            affected = False
    return affected


def affects(affected: dict[str, Any], version: str) -> bool:
    if version in affected.get("versions", []):
        return True
    parsed = _version(version)
    if parsed is None:
        return False
    return any(
        in_range(parsed, r.get("events", []))
        for r in affected.get("ranges", [])
        if r.get("type") in {"ECOSYSTEM", "SEMVER"}
    )


def match(packages: dict[str, str], records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per (package, vulnerability) where the installed version is affected."""
    installed = {canonicalize_name(name): (name, version) for name, version in packages.items()}
    found = set()
    for record in records:
        for affected in record.get("affected", []):
            package = affected.get("package", {})
            if package.get("ecosystem") != "PyPI":
                continue
            hit = installed.get(canonicalize_name(package.get("name", "")))
            if hit and affects(affected, hit[1]):
                fixed = [e["fixed"] for r in affected.get("ranges", []) for e in r.get("events", []) if "fixed" in e]
                found.add(f"{hit[0]} {hit[1]}: {record['id']}" + (f" (fixed in {', '.join(fixed)})" if fixed else ""))
    return sorted(found)


def wheel_versions(names: Iterable[str]) -> dict[str, str]:
    """name → version of each wheel file name (`name-version-….whl`)."""
    out = {}
    for name in names:
        base = Path(name).name
        if base.endswith(".whl") and base.count("-") >= 4:
            dist, version = base.split("-")[:2]
            out[dist] = version
    return out
