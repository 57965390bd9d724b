"""Per-environment secrets: generated on the first `up`, stored with ansible-vault, shown once.

There are no default credentials anywhere: every password and token here is random, and the
vault file is the only place that holds them (`.state/<env>/secrets.vault.yml`, encrypted with
the password in `.state/<env>/vault-password`, mode 0600). Values already in the vault are
never regenerated, so a second `up` changes nothing.
"""

from __future__ import annotations

import os
import secrets as random
from pathlib import Path

import yaml
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret

ROOT = Path(__file__).resolve().parent.parent
# Where the site names the users of Prometheus's and Alertmanager's basic auth (their passwords are here).
SITE_VARS = ROOT / "playbooks" / "group_vars" / "all" / "site.yml"

# Ansible variable name -> length of the random value. The names are the roles' public inputs.
GENERATED = {
    "perses_admin_password": 24,
    # Perses encrypts the secrets in its database with exactly 32 bytes.
    "perses_encryption_key": 32,
    "scalemart_admin_token": 40,
    # HS256 key of the buyer tokens (app/scalemart/tokens.py)
    "scalemart_buyer_token_key": 48,
    "redis_password": 32,
    "mongodb_password": 32,
    "backups_encryption_key": 48,
    "sms_notifier_token": 32,
    # basic auth of Prometheus's and Alertmanager's UI and API (only bcrypt hashes land on the hosts)
    "prometheus_web_password": 24,
    "alertmanager_web_password": 24,
    # ... and of the exporters that take a web config (node, blackbox, mongodb)
    "exporters_web_password": 24,
}


def state_dir(env: str) -> Path:
    path = ROOT / ".state" / env
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def vault_password_file(env: str) -> Path:
    path = state_dir(env) / "vault-password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(random.token_urlsafe(32) + "\n")
    return path


def vault_file(env: str) -> Path:
    return state_dir(env) / "secrets.vault.yml"


def _vault(env: str) -> VaultLib:
    password = vault_password_file(env).read_text().strip().encode()
    return VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])


def load(env: str) -> dict[str, str]:
    path = vault_file(env)
    if not path.exists():
        return {}
    return dict(yaml.safe_load(_vault(env).decrypt(path.read_bytes())) or {})


def ensure(env: str) -> dict[str, str]:
    """Fill in missing secrets; return only the ones created now (to be printed once)."""
    current = load(env)
    created = {
        name: random.token_urlsafe(length)[:length] for name, length in GENERATED.items() if not current.get(name)
    }
    if created:
        current.update(created)
        data = _vault(env).encrypt(yaml.safe_dump(current, sort_keys=True))
        tmp = vault_file(env).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.replace(vault_file(env))
    return created


def ansible_args(env: str) -> list[str]:
    return ["--vault-password-file", str(vault_password_file(env)), "-e", f"@{vault_file(env)}"]


def describe(env: str) -> str:
    return (
        f"{vault_file(env).relative_to(ROOT)} (ansible-vault, key in "
        f"{vault_password_file(env).relative_to(ROOT)}); show with `make credentials ENV={env}`"
    )


def web_credential(env: str, service: str) -> tuple[str, str]:
    """(user, password) Prometheus's or Alertmanager's UI and API ask for in `env`."""
    user = yaml.safe_load(SITE_VARS.read_text())[f"{service}_web_user"]
    password = load(env).get(f"{service}_web_password")
    if not password:
        raise SystemExit(f"no {service}_web_password in {vault_file(env)}: run `make up ENV={env}` first")
    return str(user), password
