"""The prometheus role: Debian Prometheus with generated config and the alert_rules/ rules."""

import json
import os
from pathlib import Path

import yaml
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    basic_auth,
    fail_with_journal,
    http_get,
    journal_on_failure,
    private_address,
)

ROOT = Path(__file__).resolve().parents[3]
# The artifacts folder the scenario installed from (molecule/shared/group_vars/all/molecule.yml).
ARTIFACTS = Path(os.environ["SCALEMART_ARTIFACTS"])
BUILT_RULES = sorted(p.name for p in (ARTIFACTS / "rules/rules").glob("*.yml"))
SCENARIO_VARS = yaml.safe_load((ROOT / "molecule/prometheus/vars.yml").read_text())
ROLE_DEFAULTS = yaml.safe_load((ROOT / "roles/prometheus/defaults/main.yml").read_text())


CREDENTIAL = basic_auth(SCENARIO_VARS["prometheus_web_user"], SCENARIO_VARS["prometheus_web_password"])


def api(host, path):
    status, body = http_get(host, f"http://{private_address(host)}:9090{path}", "prometheus", CREDENTIAL)
    with journal_on_failure(host, "prometheus", ValueError):
        assert status == 200, body
        return json.loads(body)["data"]


def test_prometheus_is_active(host):
    assert_active(host, "prometheus")


def test_prometheus_is_enabled(host):
    assert_enabled(host, "prometheus")


def test_prometheus_listens_on_the_private_address(host):
    assert_listening(host, "prometheus", f"tcp://{private_address(host)}:9090")


def test_config_holding_the_scrape_credentials_is_readable_by_prometheus_only(host):
    assert_file(host, "/etc/prometheus/prometheus.yml", "root", "prometheus", 0o640)


def test_the_ui_and_api_ask_for_the_credential(host):
    base = f"http://{private_address(host)}:9090"
    user = SCENARIO_VARS["prometheus_web_user"]
    with journal_on_failure(host, "prometheus"):
        for path in ("/-/ready", "/api/v1/query?query=up", "/graph"):
            assert http_get(host, base + path, "prometheus")[0] == 401, path
        assert http_get(host, base + "/-/ready", "prometheus", basic_auth(user, "wrong-password-0123"))[0] == 401
        assert http_get(host, base + "/-/ready", "prometheus", CREDENTIAL)[0] == 200


def test_only_a_bcrypt_hash_of_the_password_lands_in_the_web_config(host):
    assert_file(host, "/etc/prometheus/web.yml", "root", "prometheus", 0o640)
    text = host.file("/etc/prometheus/web.yml").content_string
    assert SCENARIO_VARS["prometheus_web_password"] not in text
    assert f"  {SCENARIO_VARS['prometheus_web_user']}: $2b$10$" in text, text


def test_retention_comes_from_the_variable(host):
    wanted = SCENARIO_VARS["prometheus_retention_time"]
    # 15d is the role default and Prometheus's own: matching it would not show the variable reached the flag.
    assert wanted not in (ROLE_DEFAULTS["prometheus_retention_time"], "15d"), "set a non-default retention in vars.yml"
    with journal_on_failure(host, "prometheus"):
        assert api(host, "/api/v1/status/flags")["storage.tsdb.retention.time"] == wanted
        # what the TSDB really applies, not only what was passed: with a size limit too, "5d or 1GiB"
        size = SCENARIO_VARS["prometheus_retention_size"].replace("B", "iB")
        assert api(host, "/api/v1/status/runtimeinfo")["storageRetention"] == f"{wanted} or {size}"


def test_size_retention_comes_from_the_variable(host):
    wanted = SCENARIO_VARS["prometheus_retention_size"]
    assert wanted != ROLE_DEFAULTS["prometheus_retention_size"], "set a non-default size retention in vars.yml"
    with journal_on_failure(host, "prometheus"):
        # Prometheus prints the size back base 2: 1GB as 1GiB
        assert api(host, "/api/v1/status/flags")["storage.tsdb.retention.size"] == wanted.replace("B", "iB")
    # Prometheus's sizes are base 2 (1GB = 2^30 bytes); the metric the retention alert reads.
    number, unit = int(wanted[:-2]), wanted[-2:]
    limit = number * 1024 ** {"KB": 1, "MB": 2, "GB": 3, "TB": 4}[unit]
    result = api(host, "/api/v1/query?query=prometheus_tsdb_retention_limit_bytes")["result"]
    if not result:
        fail_with_journal(host, "prometheus", "prometheus_tsdb_retention_limit_bytes is not scraped yet")
    with journal_on_failure(host, "prometheus"):
        assert float(result[0]["value"][1]) == limit


def _targets(host, job):
    targets = api(host, "/api/v1/targets?state=active")["activeTargets"]
    return [t for t in targets if t["labels"]["job"] == job]


def test_probe_jobs_go_through_the_exporter_with_the_target_as_instance(host):
    by_probe = {t["labels"]["probe"]: t for t in _targets(host, "blackbox")}
    address = f"{private_address(host)}:9090"
    with journal_on_failure(host, "prometheus"):
        assert set(by_probe) == {"shop-ready", "tcp"}, by_probe
        ready, tcp = by_probe["shop-ready"], by_probe["tcp"]
        assert ready["labels"]["instance"] == "http://10.0.0.10:80/health/ready"
        assert ready["labels"]["env"] == SCENARIO_VARS["prometheus_environment"]
        assert ready["scrapeUrl"].startswith(f"http://{address}/probe?")
        assert "module=http_2xx" in ready["scrapeUrl"] and "target=http%3A%2F%2F10.0.0.10%3A80" in ready["scrapeUrl"]
        # The group's __param_module label overrides the job's module.
        assert tcp["labels"]["instance"] == "10.0.0.20:6379"
        assert "module=tcp_connect" in tcp["scrapeUrl"] and "target=10.0.0.20%3A6379" in tcp["scrapeUrl"]


def test_query_answers_with_the_env_label(host):
    result = api(host, "/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D")["result"]
    if not result:
        fail_with_journal(host, "prometheus", "up{job=prometheus} is empty: the self-scrape has not happened")
    with journal_on_failure(host, "prometheus"):
        assert result[0]["metric"]["env"] == SCENARIO_VARS["prometheus_environment"]
        # 1: the self-scrape sends the job's basic_auth (without it the target answers 401 and is down)
        assert result[0]["value"][1] == "1", result


def test_every_built_rule_file_is_installed(host):
    assert BUILT_RULES, f"{ARTIFACTS}/rules/rules is empty: the build phase wrote no rules"
    installed = sorted(host.run("ls /etc/prometheus/rules").stdout.split())
    assert installed == BUILT_RULES


def test_prometheus_loaded_the_alert_rules(host):
    groups = api(host, "/api/v1/rules")["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    with journal_on_failure(host, "prometheus"):
        assert "Watchdog" in alerts
        assert "RedisDown" in alerts


def test_broken_rule_was_refused_and_previous_rules_kept(host):
    # side_effect.yml tried to add broken.rules.yml; promtool refused it, so nothing changed.
    assert not host.file("/etc/prometheus/rules/broken.rules.yml").exists
    groups = api(host, "/api/v1/rules")["groups"]
    with journal_on_failure(host, "prometheus"):
        assert "broken" not in {g["name"] for g in groups}
    assert host.run("promtool check rules /etc/prometheus/rules/*.yml").rc == 0
