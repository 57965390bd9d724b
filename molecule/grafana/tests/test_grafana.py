"""The grafana role: Grafana's config, datasource, provider and dashboards on the host, checked; no server.

github.com/grafana/grafana is AGPL-licensed and this project does not build or ship it, so no
Grafana runs in this scenario: these tests read the files the role leaves for a Grafana the
operator installs later, and run the role's own static check on them.
"""

import configparser
import json
from pathlib import Path

import pytest
from scalemart_testinfra import assert_file, private_address

ROOT = Path(__file__).resolve().parents[3]
BUILT = {p.name: p.read_bytes() for p in sorted((ROOT / "build/dashboards").glob("*.json"))}
PASSWORD = "molecule-grafana-password-0123"  # noqa: S105 - throwaway test container
INI = "/etc/grafana/grafana.ini"
DATASOURCES = "/etc/grafana/provisioning/datasources/prometheus.yaml"
PROVIDERS = "/etc/grafana/provisioning/dashboards/scalemart.yaml"
DASHBOARDS = "/var/lib/grafana/dashboards"
CHECK = "/usr/local/lib/scalemart/grafana-check-provisioning"


def ini(host):
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    parser.read_string(host.file(INI).content_string)
    return parser


def json_file(host, path):
    return json.loads(host.file(path).content_string)


def test_grafana_system_user_exists(host):
    user = host.user("grafana")
    assert user.exists
    assert user.uid < 1000, f"grafana is uid {user.uid}, not a system user"
    assert user.shell == "/usr/sbin/nologin"


@pytest.mark.parametrize(("path", "owner", "mode"), [
    ("/etc/grafana", "root", 0o755),
    ("/etc/grafana/provisioning", "root", 0o755),
    ("/etc/grafana/provisioning/datasources", "root", 0o755),
    ("/etc/grafana/provisioning/dashboards", "root", 0o755),
    ("/etc/grafana/provisioning/plugins", "root", 0o755),
    ("/etc/grafana/provisioning/alerting", "root", 0o755),
    ("/etc/grafana/provisioning/notifiers", "root", 0o755),
    ("/var/lib/grafana", "grafana", 0o750),
    (DASHBOARDS, "root", 0o755),
    ("/var/log/grafana", "grafana", 0o750),
])
def test_grafana_folder_has_its_owner_and_mode(host, path, owner, mode):
    assert host.file(path).is_directory, f"{path} is not a folder"
    assert_file(host, path, owner, "grafana", mode)


def test_config_with_admin_password_is_not_world_readable(host):
    assert_file(host, INI, "root", "grafana", 0o640)


@pytest.mark.parametrize("path", [DATASOURCES, PROVIDERS])
def test_provisioning_file_is_root_owned_and_readable_by_grafana(host, path):
    assert_file(host, path, "root", "grafana", 0o644)


def test_grafana_ini_holds_the_generated_password_not_admin(host):
    security = ini(host)["security"]
    assert security["admin_user"] == "admin"
    assert security["admin_password"].strip('"') == PASSWORD
    assert security["admin_password"].strip('"').lower() != "admin"


def test_grafana_ini_listens_on_the_private_address(host):
    server = ini(host)["server"]
    assert (server["http_addr"], server["http_port"]) == (private_address(host), "3000")


def test_nothing_phones_home(host):
    parser = ini(host)
    for section, key in (("analytics", "reporting_enabled"), ("analytics", "check_for_updates"),
                         ("analytics", "check_for_plugin_updates"), ("news", "news_feed_enabled")):
        assert parser[section][key] == "false", f"[{section}] {key}"


def test_datasource_points_at_prometheus(host):
    doc = json_file(host, DATASOURCES)
    assert doc["apiVersion"] == 1
    prometheus = doc["datasources"][0]
    assert (prometheus["uid"], prometheus["type"], prometheus["isDefault"]) == ("prometheus", "prometheus", True)
    assert prometheus["url"] == f"http://{private_address(host)}:9090"


def test_dashboard_provider_reads_the_dashboards_folder(host):
    providers = json_file(host, PROVIDERS)["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [("file", DASHBOARDS)]


def test_every_built_dashboard_is_installed_unchanged(host):
    # Byte for byte the build's output: the broken dashboard side_effect.yml offered was refused.
    assert BUILT, "build/dashboards is empty: the role's build step did not run"
    assert sorted(host.run("ls %s", DASHBOARDS).stdout.split()) == sorted(BUILT)
    for name, content in BUILT.items():
        installed = host.file(f"{DASHBOARDS}/{name}")
        assert installed.content == content, f"{name} differs from build/dashboards/{name}"
        assert (installed.user, installed.group, installed.mode) == ("root", "grafana", 0o644), name


def test_every_installed_dashboard_parses_with_uid_and_title(host):
    uids = set()
    for name in BUILT:
        dash = json_file(host, f"{DASHBOARDS}/{name}")
        assert dash["uid"] and dash["title"] and isinstance(dash["panels"], list), name
        uids.add(dash["uid"])
    assert len(uids) == len(BUILT), "two dashboards share a uid"


@pytest.mark.parametrize(("kind", "path"), [("ini", INI), ("datasources", DATASOURCES), ("providers", PROVIDERS)]
                         + [("dashboard", f"{DASHBOARDS}/{name}") for name in BUILT])
def test_live_file_passes_the_roles_check(host, kind, path):
    # The `validate:` the role runs, on the live file in place of itself: what landed is consistent.
    out = host.run("%s --kind=%s --replaces=%s %s", CHECK, kind, path, path)
    assert out.rc == 0, out.stdout + out.stderr


def test_refused_datasources_file_left_the_live_one_alone(host):
    # side_effect.yml offered a second default datasource; the check refused it at `validate:`.
    assert [d["name"] for d in json_file(host, DATASOURCES)["datasources"]] == ["Prometheus"]


@pytest.mark.parametrize("sub", ["datasources", "dashboards"])
def test_no_candidate_is_left_in_provisioning(host, sub):
    # Ansible writes a candidate next to the live file; a refused one must not stay where Grafana reads.
    files = host.run("ls -A /etc/grafana/provisioning/%s", sub).stdout.split()
    assert files == {"datasources": ["prometheus.yaml"], "dashboards": ["scalemart.yaml"]}[sub]


def test_grafana_server_is_not_installed_agpl(host):
    """NOT RUN: a Grafana server. github.com/grafana/grafana is AGPL-licensed; this project does not build,
    copy, install or start it, so nothing here serves the provisioning files, logs in with the generated
    password or queries the datasource. This asserts that no Grafana binary, runtime folder, systemd unit,
    process or port 3000 listener exists on the host, including what prepare.yml left of an earlier version
    of the role (its binary, runtime files and its grafana.service and grafana-server.service units).
    """
    for path in ("/usr/local/bin/grafana", "/usr/local/bin/grafana-server", "/usr/sbin/grafana-server",
                 "/usr/share/grafana", "/etc/systemd/system/grafana.service",
                 "/etc/systemd/system/grafana-server.service"):
        assert not host.file(path).exists, f"{path} exists"
    units = host.run("systemctl list-units --all --no-legend --plain 'grafana*'").stdout.strip()
    assert not units, f"systemd still knows Grafana units:\n{units}"
    unit_files = host.run("systemctl list-unit-files --no-legend 'grafana*'").stdout.strip()
    assert not unit_files, f"Grafana unit files are installed:\n{unit_files}"
    assert host.run("pgrep -a grafana").rc == 1, host.run("pgrep -a grafana").stdout
    assert not host.socket("tcp://0.0.0.0:3000").is_listening
    assert not host.socket(f"tcp://{private_address(host)}:3000").is_listening
