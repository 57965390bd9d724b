"""The one settings class: environment variables with the SCALEMART_ prefix (or an env file)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SCALEMART_"
# Tokens an installer must never ship: rejected outside dev so a copied example cannot reach staging.
PLACEHOLDER_WORDS = ("changeme", "change-me", "placeholder", "example", "password", "secret", "admin", "token")


class SettingsError(Exception):
    """Bad configuration; the message names the environment variable and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore")

    environment: Literal["dev", "test", "staging", "production"] = "dev"
    release: str = Field(default="", description="in scalemart_app_info and sent to Sentry; the version when empty")

    redis_url: str = "redis://127.0.0.1:6379/0"
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "scalemart"
    # No default: the install generates one and passes it in the environment.
    admin_token: SecretStr = Field(min_length=16)

    host: str = "0.0.0.0"  # noqa: S104 - a service host; the load balancer reaches it on the private address
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    forwarded_allow_ips: str = "127.0.0.1"
    metrics_dir: str = Field(default="", description="prometheus multiprocess dir; a temp dir when empty")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    cache_ttl_seconds: float = Field(default=30.0, gt=0, le=3600)
    local_cache_ttl_seconds: float = Field(default=5.0, gt=0, le=300)
    idempotency_ttl_seconds: int = Field(default=86400, ge=60)
    default_per_user_limit: int = Field(default=5, ge=1, le=1000)

    user_orders_kept: int = Field(default=500, ge=1, le=10000,
                                  description="newest orders per user the orders endpoint lists (from Redis)")
    user_orders_ttl_days: int = Field(default=30, ge=0, le=3650,
                                      description="a user's order list expires this long after the last "
                                      "purchase; 0 keeps it (MongoDB keeps every order regardless)")
    rate_limit_requests: int = Field(default=100, ge=0, description="per client per window; 0 disables")
    rate_limit_window_seconds: int = Field(default=10, ge=1, le=3600)

    ready_max_queue_age_seconds: float = Field(default=60.0, gt=0)

    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus on the monitoring host scrapes it
    worker_metrics_port: int = Field(default=9101, ge=1, le=65535)
    worker_name: str = Field(default="", description="stream consumer name; the host name when empty")
    worker_batch_size: int = Field(default=100, ge=1, le=10000)
    worker_claim_idle_seconds: float = Field(default=30.0, gt=0)

    sentry_dsn: str = ""
    sentry_traces_sample_rate: float = Field(default=0.1, ge=0, le=1)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://, e.g. redis://10.0.0.5:6379/0")
        return v

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, v: str) -> str:
        if not v.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb://, e.g. mongodb://10.0.0.6:27017/")
        return v

    @model_validator(mode="after")
    def _no_placeholder_outside_dev(self) -> Settings:
        token = self.admin_token.get_secret_value()
        if self.environment in ("staging", "production"):
            lowered = token.lower()
            if len(token) < 24 or any(word in lowered for word in PLACEHOLDER_WORDS):
                raise ValueError(
                    f"{ENV_PREFIX}ADMIN_TOKEN looks like a placeholder; outside dev use the generated token "
                    "(at least 24 random characters, e.g. from `openssl rand -hex 24`)")
        return self

    @property
    def release_name(self) -> str:
        from scalemart import __version__

        return self.release or __version__


def load_settings(env_file: str | None = None) -> Settings:
    """Settings from the environment (and env_file if given); errors name the variable and the fix."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) if err["loc"] else ""
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "is required and has no default; set it in the environment or the env file"
                if field == "admin_token":
                    msg += (" (the install generates it; for a dev shell: "
                            "export SCALEMART_ADMIN_TOKEN=$(openssl rand -hex 24))")
            lines.append(f"{name}: {msg}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
