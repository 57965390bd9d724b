"""The alertmanager role: routing from alert_rules/, recipients from vars, API answering."""

import json
import re
from pathlib import Path

import yaml
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    basic_auth,
    http_get,
    journal_on_failure,
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


def _credential():
    play = yaml.safe_load((Path(__file__).resolve().parents[1] / "converge.yml").read_text())[0]["vars"]
    return play["alertmanager_web_user"], play["alertmanager_web_password"]


def test_the_api_asks_for_the_credential(host):
    url = f"http://{private_address(host)}:9093/api/v2/status"
    user, password = _credential()
    with journal_on_failure(host, "prometheus-alertmanager"):
        assert http_get(host, url, "prometheus-alertmanager")[0] == 401
        assert http_get(host, url, "prometheus-alertmanager", basic_auth(user, "wrong-password-0123"))[0] == 401
        assert http_get(host, url, "prometheus-alertmanager", basic_auth(user, password))[0] == 200


def test_only_a_bcrypt_hash_of_the_password_lands_in_the_web_config(host):
    assert_file(host, "/etc/prometheus/alertmanager-web.yml", "root", "prometheus", 0o640)
    user, password = _credential()
    text = host.file("/etc/prometheus/alertmanager-web.yml").content_string
    assert password not in text
    assert re.search(rf"^  {user}: \$2b\$10\$", text, re.M), text


def test_amtool_on_the_host_queries_with_the_credential(host):
    # root's amtool config names the URL and the credential file (root only)
    assert_file(host, "/etc/prometheus/amtool-http.yml", "root", "root", 0o600)
    out = host.run("amtool alert query -o json")
    assert out.rc == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list), out.stdout
    # the same query without the credential file is refused
    anonymous = host.run("amtool --http.config.file=/dev/null alert query -o json")
    said = anonymous.stdout + anonymous.stderr
    assert anonymous.rc != 0 and ("401" in said or "nauthorized" in said), said


def test_status_reports_the_rendered_routing(host):
    status, body = http_get(
        host,
        f"http://{private_address(host)}:9093/api/v2/status",
        "prometheus-alertmanager",
        basic_auth(*_credential()),
    )
    with journal_on_failure(host, "prometheus-alertmanager"):
        assert status == 200, body
        data = json.loads(body)
        # one Alertmanager: gossip on the private address, settled alone
        assert data["cluster"]["status"] in ("ready", "settling")
        assert data["cluster"]["peers"][0]["address"] == f"{private_address(host)}:9094"
        original = data["config"]["original"]
        assert "oncall@scalemart.test" in original
        assert "http://127.0.0.1:9095/alertmanager" in original
        assert "molecule-notifier-token-0123" not in original, "the bearer token is shown as <secret>"


def test_sms_notifier_runs_on_the_loopback_only(host):
    assert_active(host, "scalemart-sms-notifier")
    assert_enabled(host, "scalemart-sms-notifier")
    assert_listening(host, "scalemart-sms-notifier", "tcp://127.0.0.1:9095")
    assert not host.socket("tcp://0.0.0.0:9095").is_listening


def test_sms_notifier_settings_are_root_only(host):
    assert_file(host, "/etc/default/scalemart-sms-notifier", "root", "root", 0o600)


def test_sms_notifier_needs_the_bearer_and_then_calls_twilio(host):
    body = '{"alerts": [{"labels": {"alertname": "RedisDown", "severity": "critical"}, "annotations": {}}]}'
    url = "http://127.0.0.1:9095/alertmanager"
    status, text = http_get(host, url, "scalemart-sms-notifier", {"Content-Type": "application/json"}, body=body)
    with journal_on_failure(host, "scalemart-sms-notifier"):
        assert status == 401, text
    # with the token it tries Twilio (here a closed port) and answers 502 so Alertmanager retries
    status, text = http_get(
        host,
        url,
        "scalemart-sms-notifier",
        {"Content-Type": "application/json", "Authorization": "Bearer molecule-notifier-token-0123"},
        request_timeout=60,
        body=body,
    )
    with journal_on_failure(host, "scalemart-sms-notifier"):
        assert status == 502, text
