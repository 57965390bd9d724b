"""The grafana role: provisioning files valid and loaded by a real Grafana; no admin/admin.

If the toolchain has no Grafana server, the server tests fail and say so; the provisioning
tests still show what was rendered and validated.
"""

import base64
import json
from pathlib import Path

import pytest
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    http_get,
    journal_on_failure,
    private_address,
)

PASSWORD = "molecule-grafana-password-0123"  # noqa: S105 - throwaway test container
UNIT = "grafana-server"
BUILT = sorted(p.name for p in (Path(__file__).resolve().parents[3] / "build/dashboards").glob("*.json"))


def auth(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def server(host):
    if not host.file("/usr/local/bin/grafana").exists:
        pytest.fail("NOT RUN: no Grafana server on the host (.tools/bin/grafana missing on the control machine: "
                    "run `make bootstrap`); only the provisioning files were rendered and validated", pytrace=False)
    return f"http://{private_address(host)}:3000"


def test_provisioning_files_are_valid_json_yaml(host):
    for path in ("/etc/grafana/provisioning/datasources/prometheus.yaml",
                 "/etc/grafana/provisioning/dashboards/scalemart.yaml"):
        assert host.run("python3 -m json.tool %s", path).rc == 0, path


def test_every_generated_dashboard_is_installed(host):
    assert BUILT, "build/dashboards is empty: the role's build step did not run"
    assert sorted(host.run("ls /var/lib/grafana/dashboards").stdout.split()) == BUILT


def test_config_with_admin_password_is_not_world_readable(host):
    assert_file(host, "/etc/grafana/grafana.ini", "root", "grafana", 0o640)


def test_grafana_is_active(host, server):
    assert_active(host, UNIT)


def test_grafana_is_enabled(host, server):
    assert_enabled(host, UNIT)


def test_grafana_listens_on_the_private_address(host, server):
    assert_listening(host, UNIT, f"tcp://{private_address(host)}:3000")


def test_default_admin_password_is_refused(host, server):
    status, _ = http_get(host, f"{server}/api/datasources", UNIT, headers=auth("admin", "admin"))
    with journal_on_failure(host, UNIT):
        assert status == 401


def test_datasource_is_provisioned(host, server):
    url = f"{server}/api/datasources/uid/prometheus"
    status, body = http_get(host, url, UNIT, headers=auth("admin", PASSWORD))
    with journal_on_failure(host, UNIT):
        assert status == 200, body
        assert json.loads(body)["type"] == "prometheus"


def test_dashboards_are_provisioned(host, server):
    uids = {json.loads(host.file(f"/var/lib/grafana/dashboards/{n}").content_string)["uid"] for n in BUILT}
    deadline_checks = 30
    found = set()
    for _ in range(deadline_checks):
        status, body = http_get(host, f"{server}/api/search?type=dash-db", UNIT, headers=auth("admin", PASSWORD))
        with journal_on_failure(host, UNIT):
            assert status == 200, body
        found = {d["uid"] for d in json.loads(body)}
        if uids <= found:
            break
        host.run("sleep 2")
    with journal_on_failure(host, UNIT):
        assert uids <= found, f"not provisioned: {sorted(uids - found)}"


def test_generated_admin_password_logs_in(host, server):
    status, body = http_get(host, f"{server}/api/user", UNIT, headers=auth("admin", PASSWORD))
    with journal_on_failure(host, UNIT):
        assert status == 200 and json.loads(body)["login"] == "admin", body


def test_nothing_phones_home(host):
    ini = host.file("/etc/grafana/grafana.ini").content_string
    for key in ("reporting_enabled", "check_for_updates", "check_for_plugin_updates", "news_feed_enabled"):
        assert f"{key} = false" in ini, key


@pytest.mark.parametrize("sub", ["datasources", "dashboards", "plugins", "notifiers", "alerting"])
def test_every_provisioning_directory_exists(host, sub):
    assert host.file(f"/etc/grafana/provisioning/{sub}").is_directory


def test_prometheus_datasource_health_check_passes(host, server):
    # Debian's Prometheus from the scenario's prepare step answers the datasource's test query.
    status, body = http_get(host, f"{server}/api/datasources/uid/prometheus/health", UNIT,
                            headers=auth("admin", PASSWORD))
    with journal_on_failure(host, UNIT):
        assert status == 200 and json.loads(body)["status"] == "OK", body


def test_refused_datasource_left_the_installed_file_and_service_alone(host, server):
    # side_effect.yml tried a second default datasource; the throwaway Grafana refused it.
    assert "Second default" not in host.file("/etc/grafana/provisioning/datasources/prometheus.yaml").content_string
    status, body = http_get(host, f"{server}/api/datasources", UNIT, headers=auth("admin", PASSWORD))
    with journal_on_failure(host, UNIT):
        assert status == 200 and [d["name"] for d in json.loads(body)] == ["Prometheus"], body
    assert_active(host, UNIT)


def test_unit_under_the_earlier_name_is_retired(host):
    # prepare.yml started a `grafana` unit on port 3000, as the role's first version left on dev.
    assert not host.file("/etc/systemd/system/grafana.service").exists
    assert not host.service("grafana").is_running
