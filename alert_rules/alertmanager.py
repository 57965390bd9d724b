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

Routing: critical -> SMS + email + webhooks; warning -> email + webhooks; info -> email. Alerts are
grouped by alertname and instance; a critical alert inhibits the warning of the same alertname and
instance; the Watchdog goes to the `heartbeat` receiver only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import yaml

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


def _url(field: str, value: Any) -> str:
    if not isinstance(value, str) or urlparse(value).scheme not in ("http", "https") or not urlparse(value).netloc:
        raise RecipientsError(field, f"must be an http(s) URL, got {value!r}", "write the full URL, https://...")
    return value


def validate(recipients: Any) -> dict[str, Any]:
    if not isinstance(recipients, dict):
        raise RecipientsError("<root>", "must be a mapping", "see alert_rules/README.md for the layout")
    smtp = recipients.get("smtp")
    if not isinstance(smtp, dict):
        raise RecipientsError("smtp", "is missing", "add smtp.smarthost and smtp.from")
    for key in ("smarthost", "from"):
        if not smtp.get(key):
            raise RecipientsError(f"smtp.{key}", "is missing", f"set smtp.{key} in the alertmanager vault variables")
    host, _, port = str(smtp["smarthost"]).rpartition(":")
    if not host or not port.isdigit():
        raise RecipientsError("smtp.smarthost", f"must be host:port, got {smtp['smarthost']!r}", "e.g. mail:587")
    if not _EMAIL.match(str(smtp["from"])):
        raise RecipientsError("smtp.from", f"{smtp['from']!r} is not an address", "e.g. alerts@shop.example")
    email = recipients.get("email")
    if not isinstance(email, dict):
        raise RecipientsError("email", "is missing", "list addresses under email.critical, email.warning, email.info")
    for sev in SEVERITIES:
        addrs = email.get(sev)
        if not isinstance(addrs, list) or not addrs:
            raise RecipientsError(f"email.{sev}", "must list at least one address", f"add an address to email.{sev}")
        for addr in addrs:
            if not isinstance(addr, str) or not _EMAIL.match(addr):
                raise RecipientsError(f"email.{sev}", f"{addr!r} is not an address", "write name@domain")
    webhooks = recipients.get("webhooks") or {}
    if not isinstance(webhooks, dict):
        raise RecipientsError("webhooks", "must map severities to URL lists", "e.g. webhooks: {critical: [https://...]}")
    for sev, urls in webhooks.items():
        if sev not in WEBHOOK_SEVERITIES:
            raise RecipientsError(f"webhooks.{sev}", "is not routed to webhooks", "use critical or warning")
        if not isinstance(urls, list):
            raise RecipientsError(f"webhooks.{sev}", "must be a list of URLs", "write [https://...]")
        for i, url in enumerate(urls):
            _url(f"webhooks.{sev}[{i}]", url)
    _url("sms_notifier_url", recipients.get("sms_notifier_url"))
    token = recipients.get("sms_notifier_token")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise RecipientsError("sms_notifier_token", "must be a string of at least 16 characters",
                              "use the generated sms_notifier_token from the vault")
    if recipients.get("heartbeat_url") is not None:
        _url("heartbeat_url", recipients["heartbeat_url"])
    timing = recipients.get("timing") or {}
    for key, value in timing.items():
        if key not in DEFAULT_TIMING:
            raise RecipientsError(f"timing.{key}", "is not a known timing", f"use {', '.join(DEFAULT_TIMING)}")
        if not isinstance(value, str) or not _DURATION.match(value):
            raise RecipientsError(f"timing.{key}", f"must be a duration, got {value!r}", "write e.g. 30s or 5m")
    return recipients


def _webhook_configs(urls: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for url in urls:
        kind = webhook_kind(url)
        if kind == "slack":
            out.setdefault("slack_configs", []).append({
                "api_url": url, "send_resolved": True,
                "title": '{{ template "slack.default.title" . }}',
                "text": "{{ range .Alerts }}*{{ .Labels.severity }}* {{ .Annotations.description }} "
                        "<{{ .Annotations.runbook_url }}|runbook>\n{{ end }}",
            })
        elif kind == "discord":
            out.setdefault("discord_configs", []).append({"webhook_url": url, "send_resolved": True})
        else:
            out.setdefault("webhook_configs", []).append({"url": url, "send_resolved": True})
    return out


def _email(to: list[str]) -> dict[str, Any]:
    return {"to": ", ".join(to), "send_resolved": True,
            "headers": {"Subject": '[{{ .Status | toUpper }}] {{ .CommonLabels.severity }}: '
                                   '{{ .CommonLabels.alertname }} {{ .CommonLabels.instance }}'}}


def _sms_webhook(r: dict[str, Any]) -> dict[str, Any]:
    hook: dict[str, Any] = {"url": r["sms_notifier_url"], "send_resolved": False}
    if r.get("sms_notifier_token"):
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": r["sms_notifier_token"]}}
    return hook


def config(recipients: dict[str, Any]) -> dict[str, Any]:
    r = validate(recipients)
    smtp = r["smtp"]
    glob: dict[str, Any] = {
        "resolve_timeout": "5m",
        "smtp_smarthost": smtp["smarthost"],
        "smtp_from": smtp["from"],
        "smtp_require_tls": bool(smtp.get("require_tls", True)),
    }
    if smtp.get("auth_username"):
        glob["smtp_auth_username"] = smtp["auth_username"]
    if smtp.get("auth_password"):
        glob["smtp_auth_password"] = smtp["auth_password"]
    webhooks = r.get("webhooks") or {}
    timing = {**DEFAULT_TIMING, **(r.get("timing") or {})}
    receivers: list[dict[str, Any]] = [
        {"name": "critical", "email_configs": [_email(r["email"]["critical"])],
         **_merge(_webhook_configs(webhooks.get("critical", [])),
                  {"webhook_configs": [_sms_webhook(r)]})},
        {"name": "warning", "email_configs": [_email(r["email"]["warning"])],
         **_webhook_configs(webhooks.get("warning", []))},
        {"name": "info", "email_configs": [_email(r["email"]["info"])]},
    ]
    heartbeat: dict[str, Any] = {"name": "heartbeat"}
    if r.get("heartbeat_url"):
        heartbeat["webhook_configs"] = [{"url": r["heartbeat_url"], "send_resolved": False}]
    receivers.append(heartbeat)
    return {
        "global": glob,
        "route": {
            "receiver": "info",
            "group_by": ["alertname", "instance"],
            **timing,
            "routes": [
                # the dead-man's switch: re-sent every minute so the far end notices when it stops
                {"receiver": "heartbeat", "matchers": ['alertname="Watchdog"'],
                 "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"},
                {"receiver": "critical", "matchers": ['severity="critical"'], "repeat_interval": "1h"},
                {"receiver": "warning", "matchers": ['severity="warning"']},
                {"receiver": "info", "matchers": ['severity="info"'], "repeat_interval": "24h"},
            ],
        },
        "inhibit_rules": [
            {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "instance"]},
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
