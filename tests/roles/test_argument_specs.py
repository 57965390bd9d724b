"""Every role documents its inputs in meta/argument_specs.yml, and that file matches defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.roles.conftest import ROLES, ROOT

# The environment's generated secrets keep their vault names (ops/secrets.py) in every role that needs them.
VAULT_NAMES = {
    "perses_admin_password",
    "perses_encryption_key",
    "scalemart_admin_token",
    "scalemart_buyer_token_key",
    "redis_password",
    "mongodb_password",
    "backups_encryption_key",
    "sms_notifier_token",
}

TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict, "path": str}


def load(role: str) -> tuple[dict, dict]:
    base = ROOT / "roles" / role
    spec_file = base / "meta" / "argument_specs.yml"
    assert spec_file.exists(), f"roles/{role}/meta/argument_specs.yml is missing"
    spec = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]["options"]
    defaults_file = base / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.exists() else {}
    return spec, defaults


def test_every_role_is_checked() -> None:
    assert {"common", "redis", "mongodb", "loadbalancer", "exporters", "prometheus", "alertmanager"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented(role: str) -> None:
    spec, defaults = load(role)
    missing = sorted(set(defaults) - set(spec))
    assert not missing, f"roles/{role}: defaults without an entry in meta/argument_specs.yml: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_every_optional_argument_has_a_default(role: str) -> None:
    spec, defaults = load(role)
    optional = {k for k, v in spec.items() if not v.get("required")}
    missing = sorted(optional - set(defaults))
    assert not missing, f"roles/{role}: optional arguments missing from defaults/main.yml: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_required_arguments_have_no_default(role: str) -> None:
    # A default for a secret would be a default credential.
    spec, defaults = load(role)
    required = {k for k, v in spec.items() if v.get("required")}
    assert not required & set(defaults), f"roles/{role}: required arguments with a default: {required & set(defaults)}"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_equal_role_defaults(role: str) -> None:
    spec, defaults = load(role)
    for name, value in defaults.items():
        assert spec[name].get("default") == value, (
            f"roles/{role}: {name} defaults to {value!r} but argument_specs says {spec[name].get('default')!r}"
        )


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_have_the_declared_type(role: str) -> None:
    spec, defaults = load(role)
    for name, value in defaults.items():
        if isinstance(value, str) and "{{" in value:
            continue  # templated: checked by Ansible when the role runs
        declared = spec[name].get("type", "str")
        assert isinstance(value, TYPES[declared]), f"roles/{role}: {name}={value!r} is not a {declared}"


@pytest.mark.parametrize("role", ROLES)
def test_every_argument_is_described(role: str) -> None:
    spec, _ = load(role)
    undocumented = sorted(k for k, v in spec.items() if not v.get("description") or "type" not in v)
    assert not undocumented, f"roles/{role}: arguments without description or type: {undocumented}"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_role_prefix(role: str) -> None:
    spec, _ = load(role)
    wrong = sorted(k for k in spec if not k.startswith(f"{role}_") and k not in VAULT_NAMES)
    assert not wrong, f"roles/{role}: public variables must start with {role}_: {wrong}"


def test_role_layout_follows_the_house_style() -> None:
    for role in ROLES:
        for part in (
            "defaults/main.yml",
            "meta/argument_specs.yml",
            "handlers/main.yml",
            "tasks/main.yml",
            "tasks/preflight.yml",
        ):
            assert Path(ROOT / "roles" / role / part).exists(), f"roles/{role}/{part} is missing"
