"""roles/grafana/files/check_provisioning.py: the static `validate:` of the grafana role's files.

No Grafana server runs anywhere (github.com/grafana/grafana is AGPL-licensed and not shipped), so
this check is all that stands between a broken file and the live one. Each case lays out a host's
/etc/grafana/provisioning and dashboards folder in a temp dir and runs the script the way Ansible's
`validate:` does, with Python's `-S -I` (no site-packages): the hosts have the standard library only.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.roles.conftest import ROOT

CHECK = ROOT / "roles/grafana/files/check_provisioning.py"
ROLE_VARS = yaml.safe_load((ROOT / "roles/grafana/vars/main.yml").read_text())

GOOD_INI = """\
;
; Ansible managed
;
[paths]
data = /var/lib/grafana
provisioning = /etc/grafana/provisioning

[server]
http_addr = 10.0.0.3
http_port = 3000

[security]
admin_user = admin
admin_password = \"\"\"a-generated-password-0123\"\"\"

[analytics]
reporting_enabled = false
"""

PROMETHEUS = {"name": "Prometheus", "uid": "prometheus", "type": "prometheus", "access": "proxy",
              "url": "http://10.0.0.3:9090", "isDefault": True, "editable": False}
GOOD_DATASOURCES: dict[str, Any] = {"apiVersion": 1, "deleteDatasources": [], "datasources": [PROMETHEUS]}


@pytest.fixture(scope="session")
def built_dashboards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("dashboards-build")
    proc = subprocess.run([sys.executable, "-m", "dashboards", "build", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    assert built, "python -m dashboards build wrote nothing"
    return built


class Host:
    """The folders the role manages, under a temp dir."""

    def __init__(self, root: Path) -> None:
        self.provisioning = root / "etc/grafana/provisioning"
        self.dashboards = root / "var/lib/grafana/dashboards"
        for sub in ("datasources", "dashboards"):
            (self.provisioning / sub).mkdir(parents=True)
        self.dashboards.mkdir(parents=True)
        self.ini = root / "etc/grafana/grafana.ini"
        self.datasources = self.provisioning / "datasources/prometheus.yaml"
        self.providers = self.provisioning / "dashboards/scalemart.yaml"
        self.candidate = root / "candidate"

    def check(self, kind: str, content: str | dict | list, replaces: Path) -> subprocess.CompletedProcess[str]:
        self.candidate.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
        cmd = [sys.executable, "-S", "-I", str(CHECK), f"--kind={kind}", f"--provisioning={self.provisioning}",
               f"--dashboards={self.dashboards}", f"--replaces={replaces}", str(self.candidate)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def host(tmp_path: Path, built_dashboards: dict[str, dict[str, Any]]) -> Host:
    """A host as the role leaves it after a converge: every file live."""
    h = Host(tmp_path)
    h.ini.write_text(GOOD_INI)
    h.datasources.write_text(json.dumps(GOOD_DATASOURCES, indent=2))
    providers = copy.deepcopy(ROLE_VARS["_grafana_dashboard_providers"])
    providers["providers"][0]["options"]["path"] = str(h.dashboards)
    h.providers.write_text(json.dumps(providers, indent=2))
    for name, dash in built_dashboards.items():
        (h.dashboards / name).write_text(json.dumps(dash, indent=2))
    return h


def refused(proc: subprocess.CompletedProcess[str], replaces: Path, *words: str) -> None:
    """Exit 1 with one line naming the live file, the key (words) and the fix."""
    assert proc.returncode == 1, f"accepted (rc={proc.returncode}): {proc.stdout}{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{replaces}: NOT installed: "), lines[0]
    assert "; fix: " in lines[0], lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"


def accepted(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ": ok (" in proc.stdout, proc.stdout


# --- grafana.ini ---------------------------------------------------------------------------------

def test_grafana_ini_as_rendered_is_accepted(host: Host) -> None:
    accepted(host.check("ini", GOOD_INI, host.ini))


def test_grafana_ini_the_role_renders_is_accepted(host: Host) -> None:
    # The real template, rendered with the comment filter's `;` decoration and the vault's password quoted.
    template = (ROOT / "roles/grafana/templates/grafana.ini.j2").read_text()
    rendered = (template.replace("{{ ansible_managed | comment(decoration='; ') }}", ";\n; Ansible managed\n;")
                .replace("{{ _grafana_data_dir }}", "/var/lib/grafana")
                .replace("{{ _grafana_provisioning_dir }}", "/etc/grafana/provisioning")
                .replace("{{ grafana_listen_address }}", "10.0.0.3").replace("{{ grafana_port }}", "3000")
                .replace("{{ grafana_admin_user }}", "admin")
                .replace("{{ grafana_admin_password }}", "a-generated-password-0123"))
    assert "{{" not in rendered, "the template has a variable this test does not fill in"
    accepted(host.check("ini", rendered, host.ini))


@pytest.mark.parametrize(("broken", "words"), [
    (GOOD_INI.replace('"""a-generated-password-0123"""', "admin"), ["[security] admin_password", "admin"]),
    (GOOD_INI.replace('"""a-generated-password-0123"""', '"""admin"""'), ["[security] admin_password"]),
    (GOOD_INI.replace('"""a-generated-password-0123"""', "`admin`"), ["[security] admin_password"]),
    (GOOD_INI.replace('admin_password = """a-generated-password-0123"""\n', ""), ["[security] admin_password"]),
    (GOOD_INI.replace("admin_user = admin\n", ""), ["[security] admin_user"]),
    (GOOD_INI.replace("http_port = 3000", "http_port = 70000"), ["[server] http_port", "70000"]),
    (GOOD_INI.replace("http_port = 3000", "http_port = web"), ["[server] http_port", "web"]),
    (GOOD_INI.replace("http_addr = 10.0.0.3\n", ""), ["[server] http_addr"]),
    (GOOD_INI.replace("http_port = 3000", "http_port = 3000\nhttp_port = 3001"), ["(syntax)", "does not parse"]),
    ("admin_password = x\n" + GOOD_INI, ["(syntax)"]),
], ids=["password-admin", "password-admin-quoted", "password-admin-backticks", "password-missing", "admin-user-missing",
        "port-too-big", "port-not-int", "addr-missing", "duplicate-key", "no-section"])
def test_grafana_ini_problems_are_refused(host: Host, broken: str, words: list[str]) -> None:
    refused(host.check("ini", broken, host.ini), host.ini, *words)


# --- datasources ---------------------------------------------------------------------------------

def with_datasources(*extra: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD_DATASOURCES)
    doc["datasources"][0].update(changes)
    doc["datasources"] += list(extra)
    return doc


LOKI = {"name": "Loki", "uid": "loki", "type": "loki", "access": "proxy", "url": "http://10.0.0.4:3100"}


def test_datasources_as_provisioned_are_accepted(host: Host) -> None:
    accepted(host.check("datasources", GOOD_DATASOURCES, host.datasources))


def test_first_datasources_file_is_accepted(host: Host) -> None:
    host.datasources.unlink()
    accepted(host.check("datasources", with_datasources(LOKI), host.datasources))


@pytest.mark.parametrize(("broken", "words"), [
    (with_datasources({**LOKI, "isDefault": True}), ["isDefault", "2 datasources are default", "Prometheus, Loki"]),
    (with_datasources(isDefault=False), ["isDefault", "0 datasources are default"]),
    (with_datasources({**LOKI, "uid": "prometheus"}), ["datasources[1].uid", "'prometheus' is used twice"]),
    (with_datasources({**LOKI, "name": "Prometheus"}), ["datasources[1].name", "used twice"]),
    (with_datasources(url="http://10.0.0.3"), ["datasources[0].url", "http(s)://host:port"]),
    (with_datasources(url="prometheus:9090"), ["datasources[0].url"]),
    (with_datasources(url="ftp://10.0.0.3:9090"), ["datasources[0].url"]),
    (with_datasources({k: v for k, v in LOKI.items() if k != "access"}), ["datasources[1].access", "missing"]),
    (with_datasources({k: v for k, v in LOKI.items() if k != "url"}), ["datasources[1].url", "missing"]),
    (with_datasources(type=""), ["datasources[0].type"]),
    ({**GOOD_DATASOURCES, "apiVersion": 2}, ["apiVersion", "set apiVersion: 1"]),
    ({"apiVersion": 1}, ["datasources", "not a list"]),
    ("apiVersion: 1\ndatasources: []\n", ["is not JSON", "write the datasources as JSON"]),
], ids=["two-defaults", "no-default", "duplicate-uid", "duplicate-name", "url-without-port", "url-without-scheme",
        "url-not-http", "access-missing", "url-missing", "type-empty", "api-version", "no-list", "plain-yaml"])
def test_datasource_problems_are_refused(host: Host, broken: dict[str, Any] | str, words: list[str]) -> None:
    refused(host.check("datasources", broken, host.datasources), host.datasources, *words)


def test_second_default_in_another_file_is_refused(host: Host) -> None:
    (host.provisioning / "datasources/loki.yaml").write_text(json.dumps(
        {"apiVersion": 1, "datasources": [{**LOKI, "isDefault": True}]}))
    refused(host.check("datasources", GOOD_DATASOURCES, host.datasources), host.datasources,
            "isDefault", "other files")


def test_datasources_the_live_dashboards_need_cannot_go(host: Host) -> None:
    # Without a Prometheus datasource the dashboards' ${datasource} variable offers nothing.
    only_loki = {"apiVersion": 1, "datasources": [{**LOKI, "isDefault": True}]}
    refused(host.check("datasources", only_loki, host.datasources), host.datasources,
            "a live dashboard", "templating.list[datasource].query", "'prometheus'")


# --- dashboard providers -------------------------------------------------------------------------

def providers(host: Host, **changes: Any) -> dict[str, Any]:
    doc = json.loads(host.providers.read_text())
    doc["providers"][0].update(changes)
    return doc


def test_providers_as_provisioned_are_accepted(host: Host) -> None:
    accepted(host.check("providers", providers(host), host.providers))


@pytest.mark.parametrize(("changes", "words"), [
    ({"type": "git"}, ["providers[0].type", "use type: file"]),
    ({"name": ""}, ["providers[0].name"]),
    ({"options": {"path": "dashboards"}}, ["providers[0].options.path", "not an absolute path"]),
    ({"options": {"path": "/nonexistent/dashboards"}}, ["providers[0].options.path", "not a folder"]),
    ({"options": None}, ["providers[0].options.path"]),
], ids=["type-not-file", "name-missing", "path-relative", "path-missing", "options-missing"])
def test_provider_problems_are_refused(host: Host, changes: dict[str, Any], words: list[str]) -> None:
    refused(host.check("providers", providers(host, **changes), host.providers), host.providers, *words)


def test_provider_file_without_providers_is_refused(host: Host) -> None:
    refused(host.check("providers", {"apiVersion": 1, "providers": []}, host.providers), host.providers, "providers")


# --- dashboards ----------------------------------------------------------------------------------

def test_every_built_dashboard_is_accepted_in_place_of_itself(host: Host,
                                                              built_dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dash in built_dashboards.items():
        accepted(host.check("dashboard", dash, host.dashboards / name))


def test_every_built_dashboard_is_accepted_on_a_first_install(host: Host,
                                                              built_dashboards: dict[str, dict[str, Any]]) -> None:
    for live in host.dashboards.glob("*.json"):
        live.unlink()
    for name, dash in built_dashboards.items():
        accepted(host.check("dashboard", dash, host.dashboards / name))
        (host.dashboards / name).write_text(json.dumps(dash))


def a_dashboard(built: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    name = sorted(built)[0]
    return name, copy.deepcopy(built[name])


def first_panel_with_datasource(dash: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in dash["panels"] if p.get("datasource"))


def test_panel_with_an_unknown_datasource_uid_is_refused(host: Host,
                                                         built_dashboards: dict[str, dict[str, Any]]) -> None:
    name, dash = a_dashboard(built_dashboards)
    first_panel_with_datasource(dash)["datasource"] = {"type": "prometheus", "uid": "no-such-datasource"}
    refused(host.check("dashboard", dash, host.dashboards / name), host.dashboards / name,
            ".datasource", "'no-such-datasource' is not provisioned", "prometheus")


def test_target_with_an_unknown_datasource_uid_is_refused(host: Host,
                                                          built_dashboards: dict[str, dict[str, Any]]) -> None:
    name, dash = a_dashboard(built_dashboards)
    first_panel_with_datasource(dash)["targets"][0]["datasource"] = {"uid": "gone"}
    refused(host.check("dashboard", dash, host.dashboards / name), host.dashboards / name, ".targets[0].datasource")


def test_panel_with_an_undefined_variable_is_refused(host: Host, built_dashboards: dict[str, dict[str, Any]]) -> None:
    name, dash = a_dashboard(built_dashboards)
    first_panel_with_datasource(dash)["datasource"] = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    refused(host.check("dashboard", dash, host.dashboards / name), host.dashboards / name,
            "${DS_PROMETHEUS}", "does not define", "add a `DS_PROMETHEUS` variable")


def test_panel_naming_a_provisioned_uid_is_accepted(host: Host, built_dashboards: dict[str, dict[str, Any]]) -> None:
    name, dash = a_dashboard(built_dashboards)
    first_panel_with_datasource(dash)["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    accepted(host.check("dashboard", dash, host.dashboards / name))


def test_dashboard_uid_of_another_live_file_is_refused(host: Host, built_dashboards: dict[str, dict[str, Any]]) -> None:
    name, dash = a_dashboard(built_dashboards)
    refused(host.check("dashboard", dash, host.dashboards / "copy-of-it.json"), host.dashboards / "copy-of-it.json",
            "uid", f"{dash['uid']!r} is already used by {host.dashboards / name}")


def test_dashboard_title_of_another_live_file_is_refused(host: Host,
                                                         built_dashboards: dict[str, dict[str, Any]]) -> None:
    name, dash = a_dashboard(built_dashboards)
    dash["uid"] = "a-new-uid"
    refused(host.check("dashboard", dash, host.dashboards / "new.json"), host.dashboards / "new.json",
            "title", "already used")


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.pop("uid"), ["uid", "None"]),
    (lambda d: d.update(uid="has spaces"), ["uid"]),
    (lambda d: d.update(uid="x" * 41), ["uid"]),
    (lambda d: d.update(title=""), ["title"]),
    (lambda d: d.update(panels={}), ["panels", "not a list"]),
], ids=["uid-missing", "uid-spaces", "uid-too-long", "title-empty", "panels-not-list"])
def test_dashboard_problems_are_refused(host: Host, built_dashboards: dict[str, dict[str, Any]], change: Any,
                                        words: list[str]) -> None:
    name, dash = a_dashboard(built_dashboards)
    change(dash)
    refused(host.check("dashboard", dash, host.dashboards / name), host.dashboards / name, *words)


def test_dashboard_that_is_not_json_is_refused(host: Host) -> None:
    refused(host.check("dashboard", '{"uid": "x",', host.dashboards / "x.json"), host.dashboards / "x.json",
            "is not JSON")
