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
    # The key buyer tokens are signed with (scalemart.tokens); generated per environment, in the vault.
    buyer_token_key: SecretStr = Field(min_length=32)
    # Origins of the shop's own front end allowed to call the API from a browser (CORS); none by default.
    cors_allow_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(
        default=16384,
        ge=1024,
        le=10 * 1024 * 1024,
        description="larger request bodies get 413 (a purchase is ~150 bytes)",
    )

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

    user_orders_kept: int = Field(
        default=500, ge=1, le=10000, description="newest orders per user the orders endpoint lists (from Redis)"
    )
    user_orders_ttl_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="a user's order list expires this long after the last "
        "purchase; 0 keeps it (MongoDB keeps every order regardless)",
    )
    rate_limit_requests: int = Field(default=100, ge=0, description="per client per window; 0 disables")
    rate_limit_window_seconds: int = Field(default=10, ge=1, le=3600)

    ready_max_queue_age_seconds: float = Field(default=60.0, gt=0)

    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus on the monitoring host scrapes it
    worker_metrics_port: int = Field(default=9101, ge=1, le=65535)
    worker_name: str = Field(default="", description="stream consumer name; the host name when empty")
    worker_batch_size: int = Field(default=100, ge=1, le=10000)
    worker_claim_idle_seconds: float = Field(default=30.0, gt=0)

    # The analytics console (scalemart.analytics): where it reads system figures and alerts, how long an
    # answer is reused (N open browsers cost Prometheus one query per interval and process), the admin
    # page's session, and the stock level it calls low (the site sets it from thresholds.yml).
    # With the credential their web config asks for in the URL (http://user:password@host:9090), sent as
    # basic auth and never echoed in an error.
    prometheus_url: str = Field(
        default="", description="Prometheus' HTTP API; the analytics figures answer 503 when empty"
    )
    alertmanager_url: str = Field(
        default="", description="Alertmanager's HTTP API; /analytics/api/alerts answers 503 when empty"
    )
    analytics_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    analytics_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    analytics_session_seconds: int = Field(
        default=8 * 3600, ge=60, le=7 * 86400, description="how long an admin page login lasts"
    )
    low_stock_units: int = Field(
        default=10,
        ge=0,
        description="a product on sale with this many units or "
        "fewer is low on stock (the site passes thresholds.yml's business.stock_left)",
    )

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

    @field_validator("prometheus_url", "alertmanager_url")
    @classmethod
    def _http_scheme(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://10.0.0.7:9090 (or be empty)")
        return v.rstrip("/")

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin == "*" or not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin:
                raise ValueError(
                    f"{origin!r} is not an origin: list the front end's exact origins, e.g. "
                    '["https://shop.example.com"] (no wildcard, no trailing slash)'
                )
        return v

    @model_validator(mode="after")
    def _no_placeholder_outside_dev(self) -> Settings:
        if self.environment in ("staging", "production"):
            for name, secret in (("ADMIN_TOKEN", self.admin_token), ("BUYER_TOKEN_KEY", self.buyer_token_key)):
                value = secret.get_secret_value()
                if len(value) < 24 or any(word in value.lower() for word in PLACEHOLDER_WORDS):
                    raise ValueError(
                        f"{ENV_PREFIX}{name} looks like a placeholder; outside dev use the generated value "
                        "(at least 24 random characters, e.g. from `openssl rand -hex 24`)"
                    )
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
                if field in ("admin_token", "buyer_token_key"):
                    msg += f" (the install generates it; for a dev shell: export {name}=$(openssl rand -hex 24))"
            lines.append(f"{name}: {msg}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
