"""Stack config validation: every bad value stops with the key and the fix, before any resource."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from stack import config as sc
from tests.stack.conftest import ENVIRONMENTS, raw_config

IMAGE = "scalemart-base:test"


def validate(raw: dict[str, Any], stack: str = "dev", others: list[tuple[str, str]] | None = None) -> sc.StackConfig:
    return sc.validate(stack, raw, IMAGE, others or [])


def expect_error(
    raw: dict[str, Any], key: str, stack: str = "dev", others: list[tuple[str, str]] | None = None
) -> sc.ConfigError:
    with pytest.raises(sc.ConfigError) as info:
        validate(raw, stack, others)
    err = info.value
    assert err.key == f"scalemart:{key}", str(err)
    assert str(err).startswith(f"scalemart:{key}: ") and "Fix: " in str(err), str(err)
    return err


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_committed_configs_are_valid(env: str) -> None:
    cfg = validate(raw_config(env), env)
    assert cfg.environment == env
    assert cfg.labels["scalemart.env"] == env


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_committed_subnets_do_not_overlap_each_other(env: str) -> None:
    others = [(o, raw_config(o)["subnet"]) for o in ENVIRONMENTS if o != env]
    validate(raw_config(env), env, others)


def test_dev_is_one_host_per_role() -> None:
    cfg = validate(raw_config("dev"))
    assert [h.name for h in cfg.hosts] == ["app-1", "worker-1", "data-1", "monitoring-1", "lb-1"]


def test_staging_samples_traces_at_half_and_logs_debug() -> None:
    cfg = validate(raw_config("staging"), "staging")
    assert cfg.app_settings == {"sentry_traces_sample_rate": 0.5, "log_level": "debug", "rate_limit_requests": 1000000}
    assert cfg.name_prefix == "sm-staging" and cfg.volume_name("mongodb") == "sm-staging-mongodb"


def test_negative_rate_limit_names_the_key() -> None:
    raw = raw_config("dev")
    raw["app"] = {**raw.get("app", {}), "rateLimitRequests": -1}
    with pytest.raises(sc.ConfigError, match=r"app\.rateLimitRequests"):
        validate(raw, "dev")


@pytest.mark.parametrize(("env", "rate"), [("dev", 0), ("staging", 0), ("production", 50)])
def test_the_balancer_limit_is_off_where_load_tests_run(env: str, rate: int) -> None:
    # dev and staging take `make load` from one address; production keeps the schema's default.
    assert validate(raw_config(env), env).lb_settings == {"rate_limit_per_second": rate, "rate_limit_burst": 200}


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"rateLimitPerSecond": -1}, "lb.rateLimitPerSecond"),
        ({"rateLimitBurst": "lots"}, "lb.rateLimitBurst"),
        ({"rateLimit": 5}, "lb.rateLimit"),
    ],
)
def test_a_bad_balancer_limit_names_the_key(value: dict, key: str) -> None:
    raw = raw_config("dev")
    raw["lb"] = value
    with pytest.raises(sc.ConfigError, match=re.escape(f"scalemart:{key}:")):
        validate(raw, "dev")


def test_unknown_environment_names_the_key_and_the_choices() -> None:
    raw = raw_config("dev")
    raw["environment"] = "qa"
    err = expect_error(raw, "environment")
    assert "dev, staging, production" in err.fix


def test_a_stack_without_environment_takes_its_own_name_and_must_be_known() -> None:
    raw = raw_config("dev")
    del raw["environment"]
    assert validate(raw, "dev").environment == "dev"
    expect_error(raw, "environment", stack="feature-x")


@pytest.mark.parametrize("count", [0, -1, "two", True])
def test_app_replicas_below_one_or_not_a_number_are_refused(count: Any) -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["hosts"]["app"]["count"] = count
    expect_error(raw, "hosts.app.count")


def test_production_needs_three_apps_and_four_workers() -> None:
    raw = copy.deepcopy(raw_config("production"))
    raw["hosts"]["app"]["count"] = 2
    err = expect_error(raw, "hosts.app.count", "production")
    assert "3 or more" in err.fix
    raw = copy.deepcopy(raw_config("production"))
    raw["hosts"]["worker"]["count"] = 3
    expect_error(raw, "hosts.worker.count", "production")


def test_a_second_data_host_is_refused() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["hosts"]["data"]["count"] = 2
    expect_error(raw, "hosts.data.count")


def test_missing_role_is_named() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    del raw["hosts"]["lb"]
    expect_error(raw, "hosts.lb")


def test_overlapping_subnet_with_another_environment_is_refused() -> None:
    raw = raw_config("staging")
    raw["subnet"] = "172.28.10.0/24"
    err = expect_error(raw, "subnet", "staging", [("stack dev (Pulumi.dev.yaml)", "172.28.10.0/24")])
    assert "Pulumi.dev.yaml" in str(err)


def test_overlapping_subnet_with_a_docker_network_is_refused() -> None:
    raw = raw_config("dev")
    raw["subnet"] = "172.17.5.0/24"
    err = expect_error(raw, "subnet", others=[("Docker network bridge", "172.17.0.0/16")])
    assert "bridge" in str(err)


@pytest.mark.parametrize("subnet", ["172.28.10.0/33", "10.0.0.1/24", "8.8.8.0/24", "172.28.10.0/28", "fd00::/64"])
def test_malformed_or_unusable_subnet_is_refused(subnet: str) -> None:
    raw = raw_config("dev")
    raw["subnet"] = subnet
    expect_error(raw, "subnet")


@pytest.mark.parametrize("value", ["127.0.0.1:80x", "127.0.0.1:0", "70000", "localhost:8080", "::1:8080", ""])
def test_malformed_published_port_is_refused(value: str) -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["publish"]["lb"] = value
    expect_error(raw, "publish.lb")


def test_two_services_on_one_host_port_are_refused() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["publish"]["perses"] = raw["publish"]["lb"]
    expect_error(raw, "publish.perses")


def test_a_bare_port_binds_loopback_only() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["publish"]["lb"] = "18080"
    lb = next(p for p in validate(raw).published if p.service == "lb")
    assert (lb.host_ip, lb.host_port, lb.container_port) == ("127.0.0.1", 18080, 80)


def test_only_lb_and_monitoring_services_can_be_published() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["publish"]["redis"] = "127.0.0.1:6379"
    expect_error(raw, "publish.redis")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hosts.app.memory", "lots"),
        ("hosts.app.memory", "32m"),
        ("app.sentryTracesSampleRate", 1.5),
        ("app.logLevel", "chatty"),
        ("ports.app", 0),
        ("ports.nope", 1),
    ],
)
def test_bad_values_name_their_key(key: str, value: Any) -> None:
    raw = copy.deepcopy(raw_config("dev"))
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    expect_error(raw, key)


def test_unknown_top_level_key_is_refused() -> None:
    raw = raw_config("dev")
    raw["replicas"] = 3
    expect_error(raw, "replicas")


def test_addresses_are_static_per_role_block() -> None:
    """Raising one role's count never moves another role's address."""
    small = validate(raw_config("staging"), "staging")
    raw = copy.deepcopy(raw_config("staging"))
    raw["hosts"]["app"]["count"] = 5
    big = validate(raw, "staging")
    before = {h.name: h.address for h in small.hosts}
    after = {h.name: h.address for h in big.hosts}
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == len(after)


def test_the_entry_point_checks_a_new_stack_against_the_committed_subnets() -> None:
    from stack import __main__ as entry
    from tests.stack.conftest import ROOT

    siblings = entry.sibling_subnets("dev-copy", ROOT)
    assert ("stack dev (Pulumi.dev.yaml)", "172.28.10.0/24") in siblings
    err = expect_error(raw_config("dev"), "subnet", "dev-copy", siblings)
    assert "Pulumi.dev.yaml" in str(err)


def test_overrides_file_merges_over_the_committed_config_key_by_key(tmp_path: Any) -> None:
    from stack import cli

    overrides = tmp_path / "two-apps.yaml"
    overrides.write_text("config:\n  scalemart:hosts: {app: {count: 2}}\n")
    merged = cli.stack_config("dev", {cli.OVERRIDES_VAR: str(overrides)})
    committed = cli.committed_config("dev")
    assert merged["scalemart:hosts"]["app"] == {**committed["scalemart:hosts"]["app"], "count": 2}
    assert {k: v for k, v in merged.items() if k != "scalemart:hosts"} == {
        k: v for k, v in committed.items() if k != "scalemart:hosts"
    }
    cfg = validate({k.split(":", 1)[1]: v for k, v in merged.items()})
    assert [h.name for h in cfg.hosts if h.role == "app"] == ["app-1", "app-2"]
    assert cli.stack_config("dev", {}) == committed


@pytest.mark.parametrize("text", ["scalemart:hosts: {}\n", "config: [1]\n", "config: {a: [\n"])
def test_a_bad_overrides_file_names_the_variable_and_the_layout(tmp_path: Any, text: str) -> None:
    from stack import cli

    overrides = tmp_path / "bad.yaml"
    overrides.write_text(text)
    with pytest.raises(cli.CliError, match=cli.OVERRIDES_VAR):
        cli.stack_config("dev", {cli.OVERRIDES_VAR: str(overrides)})
    with pytest.raises(cli.CliError, match="cannot read it"):
        cli.stack_config("dev", {cli.OVERRIDES_VAR: str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize("sub", ["count", "memory"])
def test_a_missing_host_setting_is_named_in_full(sub: str) -> None:
    raw = copy.deepcopy(raw_config("dev"))
    del raw["hosts"]["app"][sub]
    err = expect_error(raw, f"hosts.app.{sub}")
    assert f"set hosts.app.{sub}" in err.fix


def test_a_misspelt_key_is_named_before_the_key_it_misses() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["hosts"]["app"] = {"cuont": 2, "memory": "256m"}
    err = expect_error(raw, "hosts.app.cuont")
    assert err.fix == "use count and memory only"


def test_the_message_is_key_problem_and_fix_in_one_line() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw["hosts"]["app"]["memory"] = "32m"
    err = expect_error(raw, "hosts.app.memory")
    assert str(err) == (
        "scalemart:hosts.app.memory: '32m' is below 64m; systemd and the service would not start. "
        "Fix: write a Docker memory size such as 256m or 1g (at least 64m)"
    )
    assert err.__cause__ is None and err.__suppress_context__, "no pydantic traceback under the one-line error"


def test_null_values_count_as_absent_where_yaml_leaves_a_key_empty() -> None:
    raw = copy.deepcopy(raw_config("dev"))
    raw.update(environment=None, app=None, ports=None)
    raw["publish"]["prometheus"] = None
    cfg = validate(raw)
    assert cfg.environment == "dev" and cfg.ports == sc.DEFAULT_PORTS
    assert cfg.app_settings == {"sentry_traces_sample_rate": 0.0, "log_level": "info", "rate_limit_requests": 100}
    assert "prometheus" not in {p.service for p in cfg.published}
