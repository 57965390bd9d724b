"""Render alertmanager.yml from a mapping of recipients; nothing personal or secret lives in the repo.

    from alert_rules.alertmanager import render
    text = render(recipients)                       # YAML string, ready for `amtool check-config`

    python -m alert_rules alertmanager --recipients recipients.yml --out alertmanager.yml
    python -m alert_rules alertmanager --recipients - --out alertmanager.yml   # recipients on stdin

The recipients mapping (the alertmanager role builds it from vault variables):

    smtp:
      smarthost: mail.internal:587       # host:port
      from: alerts@shop.example
      auth_username: alerts              # optional
      auth_password: "..."               # optional, from the vault
      require_tls: true                  # optional, default true
    email:                               # every severity mails someone
      critical: [oncall@shop.example]
      warning: [team@shop.example]
      info: [team@shop.example]
    webhooks:                            # optional; Slack and Discord incoming-webhook URLs get their
      critical: [https://hooks.slack.com/services/...]   # native integration, anything else a generic
      warning: [https://discord.com/api/webhooks/...]    # Alertmanager webhook
    sms_notifier_url: http://127.0.0.1:9095/alertmanager  # alert_rules/sms_notifier.py, critical only
    sms_notifier_token: "..."            # optional: bearer token the notifier requires (from the vault)
    heartbeat_url: https://deadman.example/ping/...       # optional: receives the Watchdog every minute
    timing: {group_wait: 30s, group_interval: 5m, repeat_interval: 4h}   # optional

Every field is checked by the pydantic models below before anything is rendered; RecipientsError names
the first bad one and its fix. An unknown field is refused too: a misspelt `heartbeat_url` would
otherwise drop the dead-man's switch without a word.

Routing: critical -> SMS + email + webhooks; warning -> email + webhooks; info -> email. Alerts are
grouped by alertname and instance; a critical alert inhibits the warning of the same alertname and
instance; the Watchdog goes to the `heartbeat` receiver only.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

SEVERITIES = ("critical", "warning", "info")
WEBHOOK_SEVERITIES = ("critical", "warning")
DEFAULT_TIMING = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class RecipientsError(ValueError):
    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        super().__init__(f"recipients.{field}: {problem} (fix: {fix})")


def webhook_kind(url: str) -> str:
    """slack, discord or webhook, from the URL of an incoming webhook."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if host == "hooks.slack.com" or host.endswith(".slack.com"):
        return "slack"
    if host in ("discord.com", "discordapp.com") and parsed.path.startswith("/api/webhooks/"):
        return "discord"
    return "webhook"


class _Invalid(ValueError):
    """Raised inside a validator with the problem and fix RecipientsError prints. `under` names the
    field below pydantic's location (a check of `webhooks` that refuses `webhooks.info`); `{field}` in
    the fix becomes the field's full name."""

    def __init__(self, problem: str, fix: str, *under: str) -> None:
        super().__init__(problem)
        self.problem, self.fix, self.under = problem, fix, under


def _url(value: Any) -> str:
    if not isinstance(value, str) or urlparse(value).scheme not in ("http", "https") or not urlparse(value).netloc:
        raise _Invalid(f"must be an http(s) URL, got {value!r}", "write the full URL, https://...")
    return value


def _addresses(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _Invalid("must list at least one address", "add an address to {field}")
    for addr in value:
        if not isinstance(addr, str) or not _EMAIL.match(addr):
            raise _Invalid(f"{addr!r} is not an address", "write name@domain")
    return value


def _token(value: Any) -> str:
    if not isinstance(value, str) or len(value) < 16:
        raise _Invalid(
            "must be a string of at least 16 characters", "use the generated sms_notifier_token from the vault"
        )
    return value


def _duration(value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.match(value):
        raise _Invalid(f"must be a duration, got {value!r}", "write e.g. 30s or 5m")
    return value


Url = Annotated[str, BeforeValidator(_url)]
Addresses = Annotated[list[str], BeforeValidator(_addresses)]
Token = Annotated[str, BeforeValidator(_token)]
Duration = Annotated[str, BeforeValidator(_duration)]


class _Section(BaseModel):
    """A mapping of known fields; a null one counts as absent, an empty REQUIRED one as missing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NOT_MAPPING: ClassVar[tuple[str, str]]
    REQUIRED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Invalid(*cls.NOT_MAPPING)
        known = [f.alias or name for name, f in cls.model_fields.items()]
        for field in value:
            if field not in known:
                raise _Invalid("is not a known field", f"use {', '.join(known)}", str(field))
        for field, fix in cls.REQUIRED.items():
            if not value.get(field):
                raise _Invalid("is missing", fix, field)
        return {k: v for k, v in value.items() if v is not None}


class _Smtp(_Section):
    NOT_MAPPING = ("is missing", "add smtp.smarthost and smtp.from")
    REQUIRED = {
        "smarthost": "set smtp.smarthost in the alertmanager vault variables",
        "from": "set smtp.from in the alertmanager vault variables",
    }

    smarthost: str
    from_: str = Field(alias="from")
    auth_username: str = ""
    auth_password: str = ""
    require_tls: bool = True

    @field_validator("smarthost", mode="before")
    @classmethod
    def _host_port(cls, value: Any) -> str:
        host, _, port = str(value).rpartition(":")
        if not host or not port.isdigit():
            raise _Invalid(f"must be host:port, got {value!r}", "e.g. mail:587")
        return str(value)

    @field_validator("from_", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str:
        if not _EMAIL.match(str(value)):
            raise _Invalid(f"{value!r} is not an address", "e.g. alerts@shop.example")
        return str(value)


class _Email(_Section):
    """Every severity mails someone: each list is checked even when absent."""

    NOT_MAPPING = ("is missing", "list addresses under email.critical, email.warning, email.info")

    critical: Addresses = Field(default=None, validate_default=True)
    warning: Addresses = Field(default=None, validate_default=True)
    info: Addresses = Field(default=None, validate_default=True)


class _Recipients(_Section):
    NOT_MAPPING = ("must be a mapping", "see alert_rules/README.md for the layout")

    smtp: _Smtp = Field(default=None, validate_default=True)
    email: _Email = Field(default=None, validate_default=True)
    webhooks: dict[str, list[Url]] = {}
    sms_notifier_url: Url = Field(default=None, validate_default=True)
    sms_notifier_token: Token | None = None
    heartbeat_url: Url | None = None
    timing: dict[str, Duration] = {}

    @field_validator("webhooks", mode="before")
    @classmethod
    def _routed(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Invalid("must map severities to URL lists", "e.g. webhooks: {critical: [https://...]}")
        for sev, urls in value.items():
            if sev not in WEBHOOK_SEVERITIES:
                raise _Invalid("is not routed to webhooks", "use critical or warning", str(sev))
            if not isinstance(urls, list):
                raise _Invalid("must be a list of URLs", "write [https://...]", str(sev))
        return value

    @field_validator("timing", mode="before")
    @classmethod
    def _known_timings(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Invalid("must be a mapping", "write e.g. timing: {group_wait: 30s, repeat_interval: 4h}")
        for key in value:
            if key not in DEFAULT_TIMING:
                raise _Invalid("is not a known timing", f"use {', '.join(DEFAULT_TIMING)}", str(key))
        return value


def _recipients_error(exc: ValidationError) -> RecipientsError:
    """The first problem pydantic found, as the RecipientsError the callers print."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    parts = (*first["loc"], *getattr(cause, "under", ()))
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "<root>"
    if isinstance(cause, _Invalid):
        return RecipientsError(field, cause.problem, cause.fix.replace("{field}", field))
    # Every field has a validator with its own words; this is pydantic's, should one ever get through.
    return RecipientsError(field, first["msg"], "see alert_rules/README.md for the layout")


def _parse(recipients: Any) -> _Recipients:
    try:
        return _Recipients.model_validate(recipients)
    except ValidationError as exc:
        raise _recipients_error(exc) from None


def validate(recipients: Any) -> dict[str, Any]:
    """The recipients mapping, unchanged, once every field is valid (else RecipientsError names the first
    field that is not)."""
    _parse(recipients)
    return recipients


def _webhook_configs(urls: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for url in urls:
        kind = webhook_kind(url)
        if kind == "slack":
            out.setdefault("slack_configs", []).append(
                {
                    "api_url": url,
                    "send_resolved": True,
                    "title": '{{ template "slack.default.title" . }}',
                    "text": "{{ range .Alerts }}*{{ .Labels.severity }}* {{ .Annotations.description }} "
                    "<{{ .Annotations.runbook_url }}|runbook>\n{{ end }}",
                }
            )
        elif kind == "discord":
            out.setdefault("discord_configs", []).append({"webhook_url": url, "send_resolved": True})
        else:
            out.setdefault("webhook_configs", []).append({"url": url, "send_resolved": True})
    return out


def _email(to: list[str]) -> dict[str, Any]:
    return {
        "to": ", ".join(to),
        "send_resolved": True,
        "headers": {
            "Subject": "[{{ .Status | toUpper }}] {{ .CommonLabels.severity }}: "
            "{{ .CommonLabels.alertname }} {{ .CommonLabels.instance }}"
        },
    }


def _sms_webhook(r: _Recipients) -> dict[str, Any]:
    # send_resolved: with it off, Alertmanager never texts a page that resolves and fires again within the repeat
    # interval (its notification log still holds the first one: prometheus/alertmanager#1063). A page that comes
    # back must text again, so the resolution is texted too ("[RESOLVED:n] ...").
    hook: dict[str, Any] = {"url": r.sms_notifier_url, "send_resolved": True}
    if r.sms_notifier_token:
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": r.sms_notifier_token}}
    return hook


def config(recipients: dict[str, Any]) -> dict[str, Any]:
    r = _parse(recipients)
    glob: dict[str, Any] = {
        "resolve_timeout": "5m",
        "smtp_smarthost": r.smtp.smarthost,
        "smtp_from": r.smtp.from_,
        "smtp_require_tls": r.smtp.require_tls,
    }
    if r.smtp.auth_username:
        glob["smtp_auth_username"] = r.smtp.auth_username
    if r.smtp.auth_password:
        glob["smtp_auth_password"] = r.smtp.auth_password
    timing = {**DEFAULT_TIMING, **r.timing}
    receivers: list[dict[str, Any]] = [
        {
            "name": "critical",
            "email_configs": [_email(r.email.critical)],
            **_merge(_webhook_configs(r.webhooks.get("critical", [])), {"webhook_configs": [_sms_webhook(r)]}),
        },
        {
            "name": "warning",
            "email_configs": [_email(r.email.warning)],
            **_webhook_configs(r.webhooks.get("warning", [])),
        },
        {"name": "info", "email_configs": [_email(r.email.info)]},
    ]
    heartbeat: dict[str, Any] = {"name": "heartbeat"}
    if r.heartbeat_url:
        heartbeat["webhook_configs"] = [{"url": r.heartbeat_url, "send_resolved": False}]
    receivers.append(heartbeat)
    return {
        "global": glob,
        "route": {
            "receiver": "info",
            "group_by": ["alertname", "instance"],
            **timing,
            "routes": [
                # the dead-man's switch: re-sent every minute so the far end notices when it stops
                {
                    "receiver": "heartbeat",
                    "matchers": ['alertname="Watchdog"'],
                    "group_wait": "0s",
                    "group_interval": "1m",
                    "repeat_interval": "1m",
                },
                {"receiver": "critical", "matchers": ['severity="critical"'], "repeat_interval": "1h"},
                {"receiver": "warning", "matchers": ['severity="warning"']},
                {"receiver": "info", "matchers": ['severity="info"'], "repeat_interval": "24h"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "instance"],
            },
        ],
        "receivers": receivers,
    }


def _merge(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out = {k: list(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, []).extend(v)
    return out


HEADER = "# Rendered by alert_rules.alertmanager from vault variables. Do not edit; holds secrets.\n"


def render(recipients: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(config(recipients), sort_keys=False, width=120, allow_unicode=True)
