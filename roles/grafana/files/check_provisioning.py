#!/usr/bin/python3
"""`validate:` for Grafana's files: a static check of the candidate before it replaces the live file.

This project installs no Grafana server (github.com/grafana/grafana is AGPL-licensed), so nothing
can start one to try a file. Instead each kind of file is checked for what a Grafana installed
later on this host would refuse or silently get wrong:

  ini          grafana.ini parses; [security] admin_user set, admin_password set and not `admin`;
               [server] http_port an integer 1-65535, http_addr set.
  datasources  apiVersion 1; every datasource has name, type, url (http(s)://host:port) and access;
               names and uids unique; exactly one isDefault across the provisioning folder; every
               live dashboard still finds its datasources.
  providers    apiVersion 1; every provider has a unique name, type `file` and an absolute
               options.path that exists.
  dashboard    JSON object with uid and title, a panels list; every datasource a panel, target or
               variable names is a provisioned uid or a `${variable}` the dashboard defines; uid and
               title not used by another file in the live dashboards folder.

Provisioning files are written as JSON (which is YAML: Grafana reads them) so that the host's
python3 checks them without PyYAML. On a problem it prints one line naming the file, the key and
the fix, and exits 1: Ansible then leaves the live file as it was. Standard library only.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KINDS = ("ini", "datasources", "providers", "dashboard")
# Datasources Grafana defines itself; panels may name them without provisioning.
BUILTIN_DATASOURCES = {"grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --", "dashboard"}
# `${name}`, `${name:format}`, `$name` and the legacy `[[name]]`.
VARIABLE_REF = re.compile(r"^(?:\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\])$")
# Grafana's own limit for dashboard uids.
DASHBOARD_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class Refused(Exception):
    """The candidate must not land: `key` is what is wrong, `fix` what to do about it."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}; fix: {fix}")
        self.key, self.problem, self.fix = key, problem, fix

    def within(self, path: Path, role: str) -> Refused:
        """The same problem, found in another live file than the candidate."""
        return Refused(f"{path} {self.key}", f"({role}) {self.problem}", self.fix)


def load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(str(path), f"cannot be read ({exc})", f"check the {what} file") from None
    except ValueError as exc:
        raise Refused(str(path), f"is not JSON ({exc})",
                      f"write the {what} as JSON (JSON is YAML for Grafana; this check reads JSON only)") from None


def api_version_1(doc: Any, fix: str) -> None:
    if not isinstance(doc, dict):
        raise Refused("(top level)", f"is a {type(doc).__name__}, not a mapping", fix)
    if doc.get("apiVersion") != 1:
        raise Refused("apiVersion", f"is {doc.get('apiVersion')!r}", "set apiVersion: 1")


# --- grafana.ini -------------------------------------------------------------------------------

def check_ini(candidate: Path) -> str:
    # Grafana's ini: `;` and `#` comments, no interpolation, values may be wrapped in """.
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"),
                                       inline_comment_prefixes=None, strict=True)
    try:
        parser.read_string(candidate.read_text(encoding="utf-8"), source=str(candidate))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise Refused("(syntax)", f"does not parse: {first}", "fix the ini syntax at that line") from None

    def value(section: str, key: str) -> str:
        raw = parser.get(section, key, fallback="").strip()
        for quote in ('"""', '"', "`"):  # the quotes Grafana's ini reader takes off
            if len(raw) >= 2 * len(quote) and raw.startswith(quote) and raw.endswith(quote):
                return raw[len(quote):-len(quote)]
        return raw

    if not value("security", "admin_user"):
        raise Refused("[security] admin_user", "is missing or empty", "set grafana_admin_user")
    if not parser.has_option("security", "admin_password") or not value("security", "admin_password"):
        raise Refused("[security] admin_password", "is missing or empty",
                      "render the generated grafana_admin_password from the vault")
    if value("security", "admin_password").lower() == "admin":
        raise Refused("[security] admin_password", "is the default `admin`",
                      "use the generated grafana_admin_password from the vault")
    port = value("server", "http_port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise Refused("[server] http_port", f"is {port!r}, not an integer from 1 to 65535", "set grafana_port")
    addr = value("server", "http_addr")
    if not addr or any(c.isspace() for c in addr):
        raise Refused("[server] http_addr", f"is {addr!r}", "set grafana_listen_address to the host's address")
    return f"admin_user {value('security', 'admin_user')}, listens on {addr}:{port}"


# --- datasources -------------------------------------------------------------------------------

def check_datasource_url(key: str, url: Any) -> None:
    fix = "give the URL as http(s)://host:port, e.g. http://10.0.0.3:9090"
    if not isinstance(url, str) or not url:
        raise Refused(key, "is missing", fix)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or not 1 <= port <= 65535:
        raise Refused(key, f"is {url!r}", fix)


def datasources_in(doc: Any, source: str) -> list[dict[str, Any]]:
    """The datasource list of one provisioning file, each entry checked on its own."""
    api_version_1(doc, f"make {source} a mapping with apiVersion: 1 and a datasources list")
    datasources = doc.get("datasources")
    if not isinstance(datasources, list):
        raise Refused("datasources", "is missing or not a list", "list the datasources under `datasources:`")
    for i, ds in enumerate(datasources):
        key = f"datasources[{i}]"
        if not isinstance(ds, dict):
            raise Refused(key, "is not a mapping", "give each datasource as name/type/url/access")
        for field in ("name", "type", "access"):
            if not isinstance(ds.get(field), str) or not ds[field]:
                raise Refused(f"{key}.{field}", "is missing", f"give every datasource a {field}")
        if ds["access"] not in ("proxy", "direct"):
            raise Refused(f"{key}.access", f"is {ds['access']!r}", "use access: proxy")
        check_datasource_url(f"{key}.url", ds.get("url"))
        if "uid" in ds and (not isinstance(ds["uid"], str) or not ds["uid"]):
            raise Refused(f"{key}.uid", f"is {ds['uid']!r}", "give a non-empty string uid or leave it out")
        if not isinstance(ds.get("isDefault", False), bool):
            raise Refused(f"{key}.isDefault", f"is {ds['isDefault']!r}", "use true or false")
    return datasources


def sibling_files(folder: Path, replaces: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Live files in `folder` other than the one the candidate replaces."""
    if not folder.is_dir():
        return []
    found = {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
    return sorted(p for p in found if p.resolve() != replaces.resolve())


def provisioned_datasources(folder: Path, replaces: Path, candidate_doc: Any = None) -> list[dict[str, Any]]:
    """Every datasource Grafana would provision: the live files, with the candidate in place of `replaces`."""
    datasources: list[dict[str, Any]] = []
    for path in sibling_files(folder, replaces, ("*.yaml", "*.yml")):
        try:
            datasources += datasources_in(load_json(path, "datasources"), str(path))
        except Refused as exc:
            raise exc.within(path, "a live datasources file") from None
    if candidate_doc is not None:
        datasources += candidate_doc["datasources"]
    return datasources


def check_datasources(candidate: Path, args: argparse.Namespace) -> str:
    doc = load_json(candidate, "datasources")
    own = datasources_in(doc, "the datasources file")
    if not isinstance(doc.get("deleteDatasources", []), list):
        raise Refused("deleteDatasources", "is not a list", "give a list of {name, orgId} or leave it out")
    folder = args.provisioning / "datasources"
    everything = provisioned_datasources(folder, args.replaces, doc)
    where = "in this file" if len(everything) == len(own) else f"in this file and the other files in {folder}"
    others = everything[: len(everything) - len(own)]
    for field in ("uid", "name"):
        seen = {other[field] for other in others if other.get(field) is not None}
        for i, ds in enumerate(own):
            value = ds.get(field)
            if value is None:
                continue
            if value in seen:
                raise Refused(f"datasources[{i}].{field}", f"{value!r} is used twice {where}",
                              f"give every datasource its own {field}")
            seen.add(value)
    defaults = [ds["name"] for ds in everything if ds.get("isDefault") is True]
    if len(defaults) != 1:
        marked = ", ".join(defaults) or "none"
        raise Refused("isDefault", f"{len(defaults)} datasources are default ({marked}) {where}",
                      "set isDefault: true on exactly one datasource (grafana_extra_datasources must not set it)")
    # The live dashboards must still find their datasources with this file in place.
    for path in sibling_files(args.dashboards, Path("/nonexistent"), ("*.json",)):
        try:
            dash = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # its own validate: refuses it; nothing to protect here
        try:
            check_dashboard_datasources(dash, everything)
        except Refused as exc:
            raise Refused(f"{path} {exc.key}", f"(a live dashboard) would break: {exc.problem}",
                          "keep the datasource it names, or update the dashboard first") from None
    return f"{len(own)} datasource(s), default {defaults[0]}"


# --- dashboard providers -----------------------------------------------------------------------

def check_providers(candidate: Path, _args: argparse.Namespace) -> str:
    doc = load_json(candidate, "dashboard provider")
    api_version_1(doc, "make it a mapping with apiVersion: 1 and a providers list")
    providers = doc.get("providers")
    if not isinstance(providers, list) or not providers:
        raise Refused("providers", "is missing, empty or not a list", "list at least one provider")
    names: set[str] = set()
    for i, prov in enumerate(providers):
        key = f"providers[{i}]"
        if not isinstance(prov, dict):
            raise Refused(key, "is not a mapping", "give each provider name, type and options.path")
        name = prov.get("name")
        if not isinstance(name, str) or not name:
            raise Refused(f"{key}.name", "is missing", "give every provider a name")
        if name in names:
            raise Refused(f"{key}.name", f"{name!r} is used twice", "give every provider its own name")
        names.add(name)
        if prov.get("type") != "file":
            raise Refused(f"{key}.type", f"is {prov.get('type')!r}", "use type: file")
        options = prov.get("options")
        path = options.get("path") if isinstance(options, dict) else None
        if not isinstance(path, str) or not path.startswith("/"):
            raise Refused(f"{key}.options.path", f"is {path!r}, not an absolute path",
                          "point it at the dashboards folder, e.g. /var/lib/grafana/dashboards")
        if not Path(path).is_dir():
            raise Refused(f"{key}.options.path", f"{path} is not a folder on this host", "create the folder first")
    return f"{len(providers)} provider(s)"


# --- dashboards --------------------------------------------------------------------------------

def panels_of(dash: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key, panel) for every panel, including those inside collapsed rows."""
    found: list[tuple[str, dict[str, Any]]] = []
    for i, panel in enumerate(dash.get("panels") or []):
        if not isinstance(panel, dict):
            raise Refused(f"panels[{i}]", "is not a mapping", "regenerate the dashboard (python -m dashboards build)")
        found.append((f"panels[{i}]", panel))
        for j, inner in enumerate(panel.get("panels") or []):
            if isinstance(inner, dict):
                found.append((f"panels[{i}].panels[{j}]", inner))
    return found


def check_dashboard_datasources(dash: dict[str, Any], datasources: list[dict[str, Any]]) -> None:
    uids = {ds["uid"] for ds in datasources if ds.get("uid")}
    names = {ds["name"] for ds in datasources}
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or [] if isinstance(v, dict)}
    used_variables: set[str] = set()

    def check(key: str, ref: Any) -> None:
        if ref is None:
            return  # the default datasource
        if isinstance(ref, dict):
            ref = ref.get("uid")
            if ref is None:
                return
            known, what = uids, "uid"
        else:
            known, what = uids | names, "uid or name"  # the legacy form names the datasource
        if not isinstance(ref, str):
            raise Refused(key, f"datasource {ref!r} is not a string", "regenerate the dashboard")
        match = VARIABLE_REF.match(ref)
        if match:
            var = next(g for g in match.groups() if g)
            if var not in variables:
                raise Refused(key, f"datasource {ref} names a variable the dashboard does not define",
                              f"add a `{var}` variable to templating.list or name a provisioned datasource uid")
            used_variables.add(var)
        elif ref not in known and ref not in BUILTIN_DATASOURCES:
            provisioned = ", ".join(sorted(uids)) or "none"
            raise Refused(key, f"datasource {what} {ref!r} is not provisioned (provisioned uids: {provisioned})",
                          "use a provisioned datasource uid or a ${datasource} variable")

    for key, panel in panels_of(dash):
        check(f"{key}.datasource", panel.get("datasource"))
        for t, target in enumerate(panel.get("targets") or []):
            if isinstance(target, dict):
                check(f"{key}.targets[{t}].datasource", target.get("datasource"))
    for name, var in variables.items():
        if var.get("type") != "datasource":
            check(f"templating.list[{name}].datasource", var.get("datasource"))
    # A datasource variable offers the datasources of its type: one must be provisioned.
    types = {ds["type"] for ds in datasources}
    for name in sorted(used_variables):
        var = variables[name]
        if var.get("type") == "datasource" and var.get("query") not in types:
            raise Refused(f"templating.list[{name}].query",
                          f"no provisioned datasource has type {var.get('query')!r} (provisioned: "
                          f"{', '.join(sorted(types)) or 'none'})", "provision one of that type")


def check_dashboard(candidate: Path, args: argparse.Namespace) -> str:
    dash = load_json(candidate, "dashboard")
    fix_build = "regenerate it with `python -m dashboards build`"
    if not isinstance(dash, dict):
        raise Refused("(top level)", "is not a JSON object", fix_build)
    uid, title = dash.get("uid"), dash.get("title")
    if not isinstance(uid, str) or not DASHBOARD_UID.match(uid):
        raise Refused("uid", f"is {uid!r}", "give the dashboard a uid of 1-40 letters, digits, - or _")
    if not isinstance(title, str) or not title.strip():
        raise Refused("title", f"is {title!r}", "give the dashboard a title")
    if not isinstance(dash.get("panels"), list):
        raise Refused("panels", "is missing or not a list", fix_build)
    check_dashboard_datasources(dash, provisioned_datasources(args.provisioning / "datasources", Path("/nonexistent")))
    # One provider, one folder: Grafana keeps only one dashboard per uid and per title.
    for path in sibling_files(args.dashboards, args.replaces, ("*.json",)):
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(other, dict):
            continue
        if other.get("uid") == uid:
            raise Refused("uid", f"{uid!r} is already used by {path}", "give the dashboard its own uid")
        if other.get("title") == title:
            raise Refused("title", f"{title!r} is already used by {path}", "give the dashboard its own title")
    return f"dashboard {uid} ({len(panels_of(dash))} panels)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", type=Path, help="the rendered file (Ansible's %%s)")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--replaces", type=Path, required=True, help="the live file the candidate would overwrite")
    parser.add_argument("--provisioning", type=Path, default=Path("/etc/grafana/provisioning"))
    parser.add_argument("--dashboards", type=Path, default=Path("/var/lib/grafana/dashboards"))
    args = parser.parse_args()
    checks = {"ini": lambda c, _a: check_ini(c), "datasources": check_datasources,
              "providers": check_providers, "dashboard": check_dashboard}
    try:
        summary = checks[args.kind](args.candidate, args)
    except Refused as exc:
        print(f"{args.replaces}: NOT installed: {exc}", file=sys.stderr)
        return 1
    print(f"{args.replaces}: ok ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
