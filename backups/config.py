"""The one config file of the data host's backups: JSON (the host has no YAML parser), written by
the `backups` role with `to_nice_json`. Every field is checked by the pydantic models below, in
JSON's own types (strict: "30" is not a number, true is not 1); an error names the field and the
fix. Defaults follow the roles (paths) and the app (data layout: the app is not installed on the
data host, so its key names are repeated in Layout and tests/backups/test_layout.py holds them to
the app's own constants)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PATH = Path("/etc/scalemart/backups.json")
CONFIG_ENV = "SCALEMART_BACKUPS_CONFIG"
ENV_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class ConfigError(Exception):
    """Bad configuration; the message names the field and the fix."""


class _Invalid(ValueError):
    """Raised inside a validator: the message after `<field>: `; `under` names the field below
    pydantic's location (a check of a section that refuses one of its keys)."""

    def __init__(self, message: str, *under: str) -> None:
        super().__init__(message)
        self.under = under


def _argv(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _Invalid('expected a command as a list of strings, e.g. ["systemctl", "stop", "scalemart-app"]')
    return value


def _commands(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid("expected a list of commands (each a list of strings)")
    return value


Argv = Annotated[list[str], BeforeValidator(_argv)]
Commands = Annotated[list[Argv], BeforeValidator(_commands)]


class _Section(BaseModel):
    """A JSON object of known keys; a REQUIRED one must be there and not empty."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _Invalid("expected an object")
        for required in cls.REQUIRED:
            if not data.get(required):
                raise _Invalid("missing; the backups role sets it (see backups/README.md)", required)
        known = sorted(f.alias or name for name, f in cls.model_fields.items())
        if unknown := sorted(set(data) - set(known)):
            raise _Invalid(f"unknown key; known keys are {', '.join(known)}", unknown[0])
        return data


class MongoConfig(_Section):
    uri: str = "mongodb://127.0.0.1:27017/"
    database: str = "scalemart"
    username: str = ""
    password: str = ""
    auth_database: str = "admin"

    @field_validator("uri")
    @classmethod
    def _mongodb_scheme(cls, uri: str) -> str:
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise _Invalid(f"{uri!r} must start with mongodb://, e.g. mongodb://127.0.0.1:27017/")
        return uri


class RedisConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 6379
    password: str = ""
    # Where the server writes its RDB; empty = ask the server (CONFIG GET dir + dbfilename).
    rdb_path: str = ""
    bgsave_timeout_seconds: float = 600.0

    @field_validator("port")
    @classmethod
    def _tcp_port(cls, port: int) -> int:
        if not 1 <= port <= 65535:
            raise _Invalid(f"{port} is not a TCP port")
        return port


class Layout(_Section):
    """Where the app keeps what the manifest counts (app/scalemart/store.py and the worker)."""

    orders_collection: str = "orders"
    # The queue the worker moves orders from into the collection (and deletes them from).
    orders_stream: str = "sm:orders"
    order_product_field: str = "product_id"
    order_quantity_field: str = "quantity"
    product_key_prefix: str = "sm:p:"
    stock_field: str = "stock"


class Hooks(_Section):
    """Commands (argv lists) the restore runs; empty lists when the playbook does it on other hosts."""

    stop: Commands = Field(default_factory=list)
    start: Commands = Field(default_factory=list)
    reconcile: Argv = Field(default_factory=list)
    # KEY=VALUE lines added to the hooks' environment (e.g. the app's env file for `scalemart reconcile`).
    env_file: str = ""
    timeout_seconds: float = 600.0


def _directory(value: Any) -> Any:
    if value == "":
        # Path("") is the working directory: archives would land wherever the tool was started.
        raise _Invalid("must not be empty (the default is /var/backups/scalemart)")
    return value


def _textfile(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise _Invalid(f"expected str/NoneType, got {type(value).__name__} {value!r}")
    return value or None  # empty, like null: no textfile


class Config(_Section):
    REQUIRED = ("environment", "encryption_key_file")

    environment: str
    encryption_key_file: Path = Field(strict=False)
    backup_dir: Annotated[Path, BeforeValidator(_directory)] = Field(Path("/var/backups/scalemart"), strict=False)
    retention_days: float = 30.0
    config_paths: Argv = Field(default_factory=list)
    textfile_path: Annotated[Path | None, BeforeValidator(_textfile)] = Field(
        Path("/var/lib/prometheus/node-exporter/scalemart_backup.prom"), strict=False
    )
    offsite_command: Argv = Field(default_factory=list)
    offsite_timeout_seconds: float = 3600.0
    mongodump: str = "/usr/local/bin/mongodump"
    mongorestore: str = "/usr/local/bin/mongorestore"
    redis_server: str = "/usr/bin/redis-server"
    mongodb: MongoConfig = Field(default_factory=MongoConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    layout: Layout = Field(default_factory=Layout)
    hooks: Hooks = Field(default_factory=Hooks)

    @field_validator("environment")
    @classmethod
    def _environment_name(cls, env: str) -> str:
        if not ENV_RE.match(env):
            raise _Invalid(f"{env!r} is not an environment name (lowercase, e.g. dev, production)")
        return env

    @field_validator("retention_days")
    @classmethod
    def _keeps_something(cls, days: float) -> float:
        if days <= 0:
            raise _Invalid(f"{days} must be > 0 (the default keeps 30 days)")
        return days

    @model_validator(mode="after")
    def _both_or_neither(self) -> Config:
        if bool(self.mongodb.username) != bool(self.mongodb.password):
            raise _Invalid("set both or neither", "mongodb.username/mongodb.password")
        return self

    def encryption_key(self) -> bytes:
        path = self.encryption_key_file
        try:
            key = path.read_bytes().strip()
        except OSError as err:
            raise ConfigError(
                f"encryption_key_file: cannot read {path} ({err.strerror}); the backups role "
                "writes it from the vault's backups_encryption_key"
            ) from None
        if len(key) < 16:
            raise ConfigError(
                f"encryption_key_file: {path} holds {len(key)} bytes; put at least 16 random "
                "bytes in it (the vault's backups_encryption_key has 48)"
            )
        return key


# pydantic's own type checks (strict), in the words of the rest of this file
_EXPECTED = {"string_type": "str", "path_type": "str", "int_type": "int", "float_type": "float"}


def _config_error(exc: ValidationError) -> ConfigError:
    """The first problem pydantic found, as `<field>: <problem and fix>`."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    parts = (*first["loc"], *getattr(cause, "under", ()))
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    if isinstance(cause, _Invalid):
        return ConfigError(f"{field}: {cause}")
    if first["type"] in _EXPECTED:
        value = first["input"]
        return ConfigError(f"{field}: expected {_EXPECTED[first['type']]}, got {type(value).__name__} {value!r}")
    return ConfigError(f"{field}: {first['msg']}; see backups/README.md for every key")


def parse(data: Any, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None


def load(path: str | os.PathLike[str] | None = None) -> Config:
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_PATH)
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as err:
        raise ConfigError(
            f"config: cannot read {path} ({err.strerror}); pass --config PATH or set {CONFIG_ENV}, "
            "or apply the backups role"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config: {path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    cfg = parse(data, str(path))
    if (cfg.mongodb.password or cfg.redis.password) and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"config: {path} holds passwords but is readable by others; run `chmod 600 {path}`")
    return cfg
