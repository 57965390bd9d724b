"""Fixtures: a real redis-server (fresh per test) and FerretDB (one per session, a database per
test), a data host's backup config pointing at them, and the CLI run as the timer runs it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.backups import servers

ROOT = servers.ROOT
PYTHON = sys.executable
MONGO_USER = "scalemart"


@pytest.fixture(scope="session")
def prerequisites() -> None:
    try:
        servers.have_tools()
    except servers.Missing as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def ferret(prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Ferret]:
    with servers.ferretdb(tmp_path_factory.mktemp("ferretdb"), MONGO_USER, "mongo-" + secrets.token_hex(12)) as f:
        yield f


@pytest.fixture
def redis_srv(prerequisites: None, tmp_path: Path) -> Iterator[servers.RedisServer]:
    with servers.redis_server(tmp_path / "redis", "redis-" + secrets.token_hex(12)) as r:
        yield r


@dataclass
class Host:
    """One data host: its config file, backup dir, textfile dir, and the servers it backs up."""

    root: Path
    config_path: Path
    config: dict[str, Any]
    redis: servers.RedisServer
    ferret: servers.Ferret
    database: str

    @property
    def backup_dir(self) -> Path:
        return Path(self.config["backup_dir"])

    @property
    def textfile(self) -> Path:
        return Path(self.config["textfile_path"])

    @property
    def hooks_log(self) -> Path:
        return self.root / "hooks.log"

    def db(self) -> Any:
        return self.ferret.client()[self.database]

    def write(self, **changes: Any) -> None:
        self.config.update(changes)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.config, fh, indent=2)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [PYTHON, "-m", "backups", "--config", str(self.config_path), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(f"$ python -m backups {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def archives(self) -> list[Path]:
        return sorted(p for p in self.backup_dir.glob("scalemart_backup_*.tar.gz"))

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in self.textfile.read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


@pytest.fixture
def host(tmp_path: Path, redis_srv: servers.RedisServer, ferret: servers.Ferret) -> Host:
    root = tmp_path / "host"
    (root / "etc" / "scalemart").mkdir(parents=True)
    (root / "textfile").mkdir()
    key = root / "etc" / "scalemart" / "backups.key"
    key.write_text(secrets.token_urlsafe(36) + "\n")
    key.chmod(0o600)
    database = "shop_" + secrets.token_hex(4)
    env_file = root / "etc" / "scalemart" / "scalemart.env"
    # What the app role's env file holds; the reconcile hook reads it like on a real host.
    env_file.write_text(
        "\n".join(
            [
                f"SCALEMART_REDIS_URL={redis_srv.url}",
                f"SCALEMART_MONGO_URL={ferret.url}",
                f"SCALEMART_MONGO_DB={database}",
                f"SCALEMART_ADMIN_TOKEN=tests-{secrets.token_hex(16)}",
                f"SCALEMART_BUYER_TOKEN_KEY=tests-{secrets.token_hex(24)}",
                "SCALEMART_ENVIRONMENT=dev",
                f"PYTHONPATH={ROOT / 'app'}",
                "",
            ]
        )
    )
    env_file.chmod(0o600)
    log = root / "hooks.log"
    config = {
        "environment": "dev",
        "encryption_key_file": str(key),
        "backup_dir": str(root / "backups"),
        "retention_days": 30,
        "config_paths": [str(redis_srv.conf), str(root / "etc" / "scalemart")],
        "textfile_path": str(root / "textfile" / "scalemart_backup.prom"),
        "mongodump": servers.tool("mongodump"),
        "mongorestore": servers.tool("mongorestore"),
        "redis_server": servers.redis_binary(),
        "mongodb": {
            "uri": ferret.bare_url,
            "database": database,
            "username": ferret.username,
            "password": ferret.password,
            "auth_database": "admin",
        },
        "redis": {"host": "127.0.0.1", "port": redis_srv.port, "password": redis_srv.password},
        "hooks": {
            "stop": [["sh", "-c", f"echo stop app worker >> {log}"]],
            "start": [["sh", "-c", f"echo start app worker >> {log}"]],
            "reconcile": [PYTHON, "-m", "scalemart", "reconcile"],
            "env_file": str(env_file),
        },
    }
    h = Host(root, root / "etc" / "scalemart" / "backups.json", config, redis_srv, ferret, database)
    h.write()
    return h
