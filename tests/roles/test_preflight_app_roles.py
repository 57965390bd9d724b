"""Preflight of the app, worker, release and perses roles: the play stops with a message naming the variable.

Same mechanism as test_preflight.py (one role, the control machine, check mode, nothing installed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.roles.conftest import ROOT
from tests.roles.test_preflight import test_preflight_stops_the_play_naming_the_variable as run_case

SECRETS = {
    "scalemart_admin_token": "a-long-enough-admin-token-0123456789",
    "scalemart_buyer_token_key": "a-long-enough-buyer-token-key-0123456789",
    "redis_password": "a-long-enough-redis-password",
    "mongodb_password": "a-long-enough-mongo-password",
}
PERSES = {"perses_admin_password": "a-long-perses-password", "perses_encryption_key": "k" * 32}

CASES = [
    # (id, role, vars, text the failure must contain)
    (
        "app-token-missing",
        "app",
        {k: v for k, v in SECRETS.items() if k != "scalemart_admin_token"},
        "scalemart_admin_token",
    ),
    ("app-token-short", "app", {**SECRETS, "scalemart_admin_token": "short-token"}, "scalemart_admin_token must be"),
    (
        "app-redis-password-missing",
        "app",
        {k: v for k, v in SECRETS.items() if k != "redis_password"},
        "redis_password",
    ),
    ("app-port-not-int", "app", {**SECRETS, "app_port": "eighty"}, "app_port"),
    ("app-workers-zero", "app", {**SECRETS, "app_workers": 0}, "app_workers must be an integer from 1 to 64"),
    ("app-rate-limit-negative", "app", {**SECRETS, "app_rate_limit_requests": -5}, "app_rate_limit_requests"),
    ("app-environment-unknown", "app", {**SECRETS, "app_environment": "prod"}, "app_environment must be one of"),
    ("app-extra-setting-name", "app", {**SECRETS, "app_extra_settings": {"cache-ttl": 1}}, "app_extra_settings"),
    (
        "app-release-missing",
        "app",
        {**SECRETS, "app_release_dir": "/nonexistent/app"},
        "app_release_dir /nonexistent/app has no release.json",
    ),
    (
        "worker-mongodb-password-missing",
        "worker",
        {k: v for k, v in SECRETS.items() if k != "mongodb_password"},
        "mongodb_password",
    ),
    ("worker-metrics-port-impossible", "worker", {**SECRETS, "worker_metrics_port": 70000}, "worker_metrics_port"),
    ("worker-batch-not-int", "worker", {**SECRETS, "worker_batch_size": "many"}, "worker_batch_size"),
    ("worker-name-bad", "worker", {**SECRETS, "worker_name": "two words"}, "worker_name"),
    # The worker's settings are the site's app_* ones, checked by the release role it applies.
    ("worker-environment-unknown", "worker", {**SECRETS, "app_environment": "prod"}, "app_environment must be one of"),
    (
        "worker-release-missing",
        "worker",
        {**SECRETS, "app_release_dir": "/nonexistent/app"},
        "app_release_dir /nonexistent/app has no release.json",
    ),
    # The release role alone: its own release_* names in the messages.
    (
        "release-token-missing",
        "release",
        {k: v for k, v in SECRETS.items() if k != "scalemart_admin_token"},
        "scalemart_admin_token",
    ),
    (
        "release-buyer-key-missing",
        "release",
        {k: v for k, v in SECRETS.items() if k != "scalemart_buyer_token_key"},
        "scalemart_buyer_token_key",
    ),
    (
        "release-buyer-key-short",
        "release",
        {**SECRETS, "scalemart_buyer_token_key": "short-key"},
        "scalemart_buyer_token_key must be",
    ),
    (
        "release-environment-unknown",
        "release",
        {**SECRETS, "release_environment": "prod"},
        "release_environment must be one of",
    ),
    (
        "release-keep-zero",
        "release",
        {**SECRETS, "release_keep_releases": 0},
        "release_keep_releases must be an integer from 1 to 20",
    ),
    (
        "release-bundle-missing",
        "release",
        {**SECRETS, "release_bundle_dir": "/nonexistent/bundle"},
        "release_bundle_dir /nonexistent/bundle has no release.json",
    ),
    ("perses-password-missing", "perses", {"perses_encryption_key": "k" * 32}, "perses_admin_password"),
    ("perses-password-admin", "perses", {**PERSES, "perses_admin_password": "admin"}, "perses_admin_password must be"),
    (
        "perses-key-short",
        "perses",
        {**PERSES, "perses_encryption_key": "short"},
        "perses_encryption_key must be exactly 32",
    ),
    (
        "perses-prometheus-auth-incomplete",
        "perses",
        {**PERSES, "perses_prometheus_basic_auth": {"username": "scalemart", "password": ""}},
        "perses_prometheus_basic_auth must be {username, password}",
    ),
    ("perses-port-not-int", "perses", {**PERSES, "perses_port": "web"}, "perses_port"),
    (
        "perses-prometheus-url-no-port",
        "perses",
        {**PERSES, "perses_prometheus_url": "http://10.0.0.3"},
        "perses_prometheus_url http(s)://host:port",
    ),
    # Every published UI asks for a credential: the extra config may not turn that off.
    (
        "perses-auth-off",
        "perses",
        {**PERSES, "perses_config_extra": {"security": {"enable_auth": False}}},
        "perses_config_extra may not turn off security.enable_auth",
    ),
    (
        "perses-guest-permissions",
        "perses",
        {
            **PERSES,
            "perses_config_extra": {
                "security": {"authorization": {"guest_permissions": [{"actions": ["read"], "scopes": ["*"]}]}}
            },
        },
        "nor grant guest_permissions",
    ),
]


@pytest.mark.parametrize(("role", "variables", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_app_roles_preflight_stops_the_play_naming_the_variable(
    role: str, variables: dict, expected: str, tmp_path: Path, venv_tool
) -> None:
    run_case(role, variables, expected, tmp_path, venv_tool)


def test_perses_preflight_names_a_resource_file_that_does_not_parse(tmp_path: Path, venv_tool) -> None:
    broken = tmp_path / "dashboard-broken.json"
    broken.write_text('{"kind": "Dashboard", "metadata": {')
    run_case(
        "perses",
        {**PERSES, "perses_tools_dir": str(ROOT / ".tools/perses"), "perses_resource_files": [str(broken)]},
        f"{broken} does not parse as JSON",
        tmp_path,
        venv_tool,
    )
