"""Preflight: wrong types, missing secrets and impossible values stop the play with a message naming the variable.

Each case applies one role to the control machine in check mode with `private_address` set, so no
host and no container is needed; the play must fail before anything is installed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.roles.conftest import ROOT, tail, tool_env

REDIS_OK = {"redis_password": "a-long-enough-redis-password"}
MONGO_OK = {"mongodb_password": "a-long-enough-mongo-password"}
RECIPIENTS_OK = {
    "smtp": {"smarthost": "127.0.0.1:25", "from": "alerts@scalemart.test"},
    "email": {"critical": ["a@scalemart.test"], "warning": ["a@scalemart.test"], "info": ["a@scalemart.test"]},
}
PROMETHEUS_OK = {"prometheus_web_user": "scalemart", "prometheus_web_password": "a-long-enough-prometheus-password"}
ALERTMANAGER_OK = {
    "alertmanager_web_user": "scalemart",
    "alertmanager_web_password": "a-long-enough-alertmanager-password",
}
EXPORTERS_OK = {"exporters_web_user": "scalemart", "exporters_web_password": "a-long-enough-exporters-password"}
BACKUPS_OK = {"backups_encryption_key": "a-long-enough-backups-encryption-key-0123", **REDIS_OK, **MONGO_OK}

CASES = [
    # (id, role, vars, text the failure must contain)
    ("redis-password-missing", "redis", {}, "redis_password"),
    ("redis-password-short", "redis", {"redis_password": "short"}, "redis_password must be"),
    ("redis-port-not-int", "redis", {**REDIS_OK, "redis_port": "six"}, "redis_port"),
    ("redis-fsync-impossible", "redis", {**REDIS_OK, "redis_appendfsync": "sometimes"}, "redis_appendfsync"),
    ("redis-maxmemory-unitless", "redis", {**REDIS_OK, "redis_maxmemory": "lots"}, "redis_maxmemory must be"),
    ("redis-appendonly-not-bool", "redis", {**REDIS_OK, "redis_appendonly": "perhaps"}, "redis_appendonly"),
    ("mongodb-password-missing", "mongodb", {}, "mongodb_password"),
    (
        "mongodb-binary-missing",
        "mongodb",
        {**MONGO_OK, "mongodb_binary_src": "/nonexistent/ferretdb"},
        "mongodb_binary_src /nonexistent/ferretdb is missing",
    ),
    ("common-journald-size", "common", {"common_journald_system_max_use": "a lot"}, "common_journald_system_max_use"),
    ("common-root-user", "common", {"common_service_user": "root"}, "common_service_user"),
    ("lb-no-upstreams", "loadbalancer", {"loadbalancer_upstream_hosts": []}, "loadbalancer_upstream_hosts is empty"),
    (
        "lb-all-drained",
        "loadbalancer",
        {"loadbalancer_upstream_hosts": ["10.0.0.2"], "loadbalancer_drained_hosts": ["10.0.0.2"]},
        "loadbalancer_drained_hosts",
    ),
    (
        "lb-same-ports",
        "loadbalancer",
        {"loadbalancer_upstream_hosts": ["10.0.0.2"], "loadbalancer_listen_port": 8081},
        "loadbalancer_listen_port",
    ),
    (
        "lb-deny-cidr-invalid",
        "loadbalancer",
        {"loadbalancer_upstream_hosts": ["10.0.0.2"], "loadbalancer_deny_cidrs": ["203.0.113.0/24", "10.0.0.300/32"]},
        "loadbalancer_deny_cidrs: '10.0.0.300/32' is not an IPv4 or IPv6 address or network",
    ),
    (
        "lb-deny-monitoring-host",
        "loadbalancer",
        {
            "loadbalancer_upstream_hosts": ["10.0.0.2"],
            "loadbalancer_monitoring_addresses": ["172.28.10.30"],
            "loadbalancer_deny_cidrs": ["172.28.10.1/24"],
        },
        "'172.28.10.1/24' holds the monitoring host 172.28.10.30",
    ),
    (
        "lb-deny-everyone",
        "loadbalancer",
        {"loadbalancer_upstream_hosts": ["10.0.0.2"], "loadbalancer_deny_cidrs": ["::/0"]},
        "'::/0' would deny every client",
    ),
    (
        "lb-monitoring-not-address",
        "loadbalancer",
        {"loadbalancer_upstream_hosts": ["10.0.0.2"], "loadbalancer_monitoring_addresses": ["monitoring-1"]},
        "loadbalancer_monitoring_addresses: 'monitoring-1' is not an IPv4 or IPv6 address",
    ),
    (
        "lb-rate-negative",
        "loadbalancer",
        {"loadbalancer_upstream_hosts": ["10.0.0.2"], "loadbalancer_rate_limit_per_second": -5},
        "loadbalancer_rate_limit_per_second",
    ),
    (
        "exporters-redis-password-missing",
        "exporters",
        {**EXPORTERS_OK, "exporters_redis_enabled": True},
        "exporters_redis_password",
    ),
    (
        "exporters-same-ports",
        "exporters",
        {**EXPORTERS_OK, "exporters_mtail_port": 9100},
        "exporters_mtail_port must differ",
    ),
    ("exporters-password-missing", "exporters", {"exporters_web_user": "scalemart"}, "exporters_web_password"),
    (
        "exporters-password-short",
        "exporters",
        {**EXPORTERS_OK, "exporters_web_password": "short"},
        "exporters_web_password (16 characters or more) must be set",
    ),
    (
        "exporters-host-limits-interval",
        "exporters",
        {**EXPORTERS_OK, "exporters_host_limits_interval": "often"},
        "exporters_host_limits_interval must be",
    ),
    (
        "prometheus-retention-size",
        "prometheus",
        {**PROMETHEUS_OK, "prometheus_retention_size": "2 gigs"},
        "prometheus_retention_size must be",
    ),
    (
        "prometheus-retention",
        "prometheus",
        {**PROMETHEUS_OK, "prometheus_retention_time": "forever"},
        "prometheus_retention_time",
    ),
    (
        "prometheus-job-without-targets",
        "prometheus",
        {**PROMETHEUS_OK, "prometheus_scrape_jobs": [{"job": "x"}]},
        "prometheus_scrape_jobs[0]",
    ),
    ("prometheus-password-missing", "prometheus", {"prometheus_web_user": "scalemart"}, "prometheus_web_password"),
    (
        "prometheus-password-short",
        "prometheus",
        {**PROMETHEUS_OK, "prometheus_web_password": "short"},
        "prometheus_web_password (16 characters or more) must be set",
    ),
    (
        "prometheus-scrape-auth-incomplete",
        "prometheus",
        {
            **PROMETHEUS_OK,
            "prometheus_scrape_jobs": [
                {"job": "am", "targets": ["10.0.0.3:9093"], "basic_auth": {"username": "scalemart"}}
            ],
        },
        "prometheus_scrape_jobs[am].basic_auth must be {username, password}",
    ),
    (
        "prometheus-alertmanager-auth-incomplete",
        "prometheus",
        {
            **PROMETHEUS_OK,
            "prometheus_alertmanagers": ["10.0.0.3:9093"],
            "prometheus_alertmanagers_basic_auth": {"password": "x" * 20},
        },
        "prometheus_alertmanagers_basic_auth must be {username, password}",
    ),
    ("alertmanager-recipients-missing", "alertmanager", {**ALERTMANAGER_OK}, "alertmanager_recipients"),
    (
        "alertmanager-password-missing",
        "alertmanager",
        {"alertmanager_web_user": "scalemart", "alertmanager_recipients": RECIPIENTS_OK},
        "alertmanager_web_password",
    ),
    (
        "alertmanager-password-short",
        "alertmanager",
        {**ALERTMANAGER_OK, "alertmanager_recipients": RECIPIENTS_OK, "alertmanager_web_password": "short"},
        "alertmanager_web_password (16 characters or more) must be",
    ),
    (
        "alertmanager-recipients-bad",
        "alertmanager",
        # The repository root holds the alert_rules package, as the build phase's artifacts/alerting does.
        {
            **ALERTMANAGER_OK,
            "alertmanager_recipients": {**RECIPIENTS_OK, "email": {"critical": ["not-an-address"]}},
            "alertmanager_alerting_dir": str(ROOT),
        },
        "recipients.email",
    ),
    ("backups-not-built", "backups", BACKUPS_OK, "has no release.json: run `make build"),
    (
        "alertmanager-not-built",
        "alertmanager",
        {**ALERTMANAGER_OK, "alertmanager_recipients": RECIPIENTS_OK},
        "has no alert_rules/alertmanager.py: run `make build",
    ),
    ("backups-key-missing", "backups", {**REDIS_OK, **MONGO_OK}, "backups_encryption_key"),
    (
        "backups-key-short",
        "backups",
        {**BACKUPS_OK, "backups_encryption_key": "short-key"},
        "backups_encryption_key must be at least 32 characters",
    ),
    (
        "backups-mongodb-password-missing",
        "backups",
        {k: v for k, v in BACKUPS_OK.items() if k != "mongodb_password"},
        "backups_mongodb_password must be set",
    ),
    ("backups-time-malformed", "backups", {**BACKUPS_OK, "backups_time": "25:00"}, "backups_time must be"),
    # What an unquoted `backups_time: 02:00` in YAML becomes.
    ("backups-time-not-str", "backups", {**BACKUPS_OK, "backups_time": 120}, "backups_time must be"),
    (
        "backups-retention-not-int",
        "backups",
        {**BACKUPS_OK, "backups_retention_days": "a month"},
        "backups_retention_days",
    ),
    (
        "backups-retention-zero",
        "backups",
        {**BACKUPS_OK, "backups_retention_days": 0},
        "backups_retention_days must be",
    ),
]


@pytest.mark.parametrize(("role", "variables", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preflight_stops_the_play_naming_the_variable(
    role: str, variables: dict, expected: str, tmp_path: Path, venv_tool
) -> None:
    # The site's artifact wiring, over an empty artifacts folder: every required input is given, and
    # each case fails on its own variable before anything would be read from the folder.
    play = [
        {
            "name": f"Preflight of {role}",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROOT / "playbooks/group_vars/all/artifacts.yml")],
            "vars": {"private_address": "127.0.0.1", "scalemart_artifacts_dir": str(tmp_path / "artifacts")},
            "roles": [{"role": role}],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    cmd = [
        venv_tool("ansible-playbook"),
        "-i",
        "localhost,",
        "--check",
        "-e",
        f"@{tmp_path / 'vars.json'}",
        str(tmp_path / "play.yml"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"the play accepted {variables}:\n{tail(output, 60)}"
    # Only the failure messages count: argument-spec failures also dump every option's name.
    messages = [json.loads(f'"{m}"') for m in re.findall(r'"msg": "((?:[^"\\]|\\.)*)"', output)]
    assert any(expected in m for m in messages), f"no failure message names {expected!r}: {messages}"
    assert "changed=" not in output or "changed=0" in output, f"the play changed something first:\n{tail(output, 60)}"
