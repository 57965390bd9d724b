"""The one config file of the data host's backups: JSON (the host has no YAML parser), written by
the `backups` role with `to_nice_json`. Every field is checked here; an error names the field and
the fix. Defaults follow the roles (paths) and the app (data layout)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/etc/scalemart/backups.json")
CONFIG_ENV = "SCALEMART_BACKUPS_CONFIG"
ENV_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class ConfigError(Exception):
    """Bad configuration; the message names the field and the fix."""


@dataclass(frozen=True)
class MongoConfig:
    uri: str = "mongodb://127.0.0.1:27017/"
    database: str = "scalemart"
    username: str = ""
    password: str = ""
    auth_database: str = "admin"


@dataclass(frozen=True)
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = 6379
    password: str = ""
    # Where the server writes its RDB; empty = ask the server (CONFIG GET dir + dbfilename).
    rdb_path: str = ""
    bgsave_timeout_seconds: float = 600.0


@dataclass(frozen=True)
class Layout:
    """Where the app keeps what the manifest counts (app/scalemart/store.py and the worker)."""

    orders_collection: str = "orders"
    # The queue the worker moves orders from into the collection (and deletes them from).
    orders_stream: str = "sm:orders"
    order_product_field: str = "product_id"
    order_quantity_field: str = "quantity"
    product_key_prefix: str = "sm:p:"
    stock_field: str = "stock"


@dataclass(frozen=True)
class Hooks:
    """Commands (argv lists) the restore runs; empty lists when the playbook does it on other hosts."""

    stop: list[list[str]] = field(default_factory=list)
    start: list[list[str]] = field(default_factory=list)
    reconcile: list[str] = field(default_factory=list)
    # KEY=VALUE lines added to the hooks' environment (e.g. the app's env file for `scalemart reconcile`).
    env_file: str = ""
    timeout_seconds: float = 600.0


@dataclass(frozen=True)
class Config:
    environment: str
    encryption_key_file: Path
    backup_dir: Path = Path("/var/backups/scalemart")
    retention_days: float = 30.0
    config_paths: list[str] = field(default_factory=list)
    textfile_path: Path | None = Path("/var/lib/prometheus/node-exporter/scalemart_backup.prom")
    offsite_command: list[str] = field(default_factory=list)
    offsite_timeout_seconds: float = 3600.0
    mongodump: str = "/usr/local/bin/mongodump"
    mongorestore: str = "/usr/local/bin/mongorestore"
    redis_server: str = "/usr/bin/redis-server"
    mongodb: MongoConfig = field(default_factory=MongoConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    layout: Layout = field(default_factory=Layout)
    hooks: Hooks = field(default_factory=Hooks)

    def encryption_key(self) -> bytes:
        path = self.encryption_key_file
        try:
            key = path.read_bytes().strip()
        except OSError as err:
            raise ConfigError(f"encryption_key_file: cannot read {path} ({err.strerror}); the backups role "
                              "writes it from the vault's backups_encryption_key") from None
        if len(key) < 16:
            raise ConfigError(f"encryption_key_file: {path} holds {len(key)} bytes; put at least 16 random "
                              "bytes in it (the vault's backups_encryption_key has 48)")
        return key


def _typed(section: str, name: str, value: Any, want: type | tuple[type, ...]) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or isinstance(value, bool) and want is not bool:
        kind = want.__name__ if isinstance(want, type) else "/".join(w.__name__ for w in want)
        raise ConfigError(f"{section}{name}: expected {kind}, got {type(value).__name__} {value!r}")
    return value


def _argv(section: str, name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ConfigError(f"{section}{name}: expected a command as a list of strings, e.g. "
                          '["systemctl", "stop", "scalemart-app"]')
    return list(value)


def _section(cls: type, data: Any, section: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{section.rstrip('.')}: expected an object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{section}{unknown[0]}: unknown key; known keys are {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    defaults = cls() if cls is not Config else None
    for name, value in data.items():
        default = getattr(defaults, name) if defaults is not None else None
        if name in ("stop", "start"):
            if not isinstance(value, list):
                raise ConfigError(f"{section}{name}: expected a list of commands (each a list of strings)")
            kwargs[name] = [_argv(section, f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif name in ("reconcile",):
            kwargs[name] = _argv(section, name, value)
        else:
            kwargs[name] = _typed(section, name, value, type(default) if default is not None else str)
    return cls(**kwargs)


def parse(data: Any, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level")
    data = dict(data)
    for required in ("environment", "encryption_key_file"):
        if not data.get(required):
            raise ConfigError(f"{required}: missing; the backups role sets it (see backups/README.md)")
    env = _typed("", "environment", data.pop("environment"), str)
    if not ENV_RE.match(env):
        raise ConfigError(f"environment: {env!r} is not an environment name (lowercase, e.g. dev, production)")
    kwargs: dict[str, Any] = {"environment": env,
                              "encryption_key_file": Path(_typed("", "encryption_key_file",
                                                                 data.pop("encryption_key_file"), str))}
    sections = {"mongodb": MongoConfig, "redis": RedisConfig, "layout": Layout, "hooks": Hooks}
    for name, cls in sections.items():
        if name in data:
            kwargs[name] = _section(cls, data.pop(name), f"{name}.")
    simple: dict[str, Any] = {"backup_dir": str, "retention_days": float, "offsite_timeout_seconds": float,
                              "mongodump": str, "mongorestore": str, "redis_server": str}
    for name, value in data.items():
        if name in simple:
            kwargs[name] = _typed("", name, value, simple[name])
        elif name in ("config_paths", "offsite_command"):
            kwargs[name] = _argv("", name, value)
        elif name == "textfile_path":
            kwargs[name] = _typed("", name, value, (str, type(None)))
        else:
            known = sorted(["environment", "encryption_key_file", *sections, *simple, "config_paths",
                            "offsite_command", "textfile_path"])
            raise ConfigError(f"{name}: unknown key; known keys are {', '.join(known)}")
    for path_key in ("backup_dir", "textfile_path"):
        if kwargs.get(path_key):
            kwargs[path_key] = Path(kwargs[path_key])
    cfg = Config(**kwargs)
    if cfg.retention_days <= 0:
        raise ConfigError(f"retention_days: {cfg.retention_days} must be > 0 (the default keeps 30 days)")
    if not 1 <= cfg.redis.port <= 65535:
        raise ConfigError(f"redis.port: {cfg.redis.port} is not a TCP port")
    if not cfg.mongodb.uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"mongodb.uri: {cfg.mongodb.uri!r} must start with mongodb://, e.g. mongodb://127.0.0.1:27017/")
    if bool(cfg.mongodb.username) != bool(cfg.mongodb.password):
        raise ConfigError("mongodb.username/mongodb.password: set both or neither")
    return cfg


def load(path: str | os.PathLike[str] | None = None) -> Config:
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_PATH)
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as err:
        raise ConfigError(f"config: cannot read {path} ({err.strerror}); pass --config PATH or set {CONFIG_ENV}, "
                          "or apply the backups role") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config: {path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    cfg = parse(data, str(path))
    if (cfg.mongodb.password or cfg.redis.password) and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"config: {path} holds passwords but is readable by others; run `chmod 600 {path}`")
    return cfg
