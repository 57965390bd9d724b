"""The alertmanager role: routing from alert_rules/, recipients from vars, API answering."""

import json

from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    http_get,
    private_address,
)


def test_alertmanager_is_active(host):
    assert_active(host, "prometheus-alertmanager")


def test_alertmanager_is_enabled(host):
    assert_enabled(host, "prometheus-alertmanager")


def test_alertmanager_listens_on_the_private_address(host):
    assert_listening(host, "prometheus-alertmanager", f"tcp://{private_address(host)}:9093")


def test_config_with_smtp_password_is_not_world_readable(host):
    assert_file(host, "/etc/prometheus/alertmanager.yml", "root", "prometheus", 0o640)


def test_status_reports_the_rendered_routing(host):
    status, body = http_get(host, f"http://{private_address(host)}:9093/api/v2/status", "prometheus-alertmanager")
    assert status == 200
    data = json.loads(body)
    # one Alertmanager: gossip on the private address, settled alone
    assert data["cluster"]["status"] in ("ready", "settling")
    assert data["cluster"]["peers"][0]["address"] == f"{private_address(host)}:9094"
    original = data["config"]["original"]
    assert "oncall@scalemart.test" in original
    assert "http://127.0.0.1:9095/alertmanager" in original


def test_amtool_accepts_the_installed_config(host):
    out = host.run("amtool check-config /etc/prometheus/alertmanager.yml")
    assert out.rc == 0, out.stdout + out.stderr
