"""SMS notifier: accepts Alertmanager webhooks and texts the on-call phones through Twilio's REST API.

    python -m alert_rules.sms_notifier          # or: python alert_rules/sms_notifier.py

Configuration comes only from the environment (the alertmanager role fills it from the vault):

    TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN   Twilio credentials
    SMS_FROM                                the Twilio number messages come from (E.164)
    SMS_TO                                  comma-separated E.164 numbers to text
    SMS_NOTIFIER_LISTEN                     host:port to listen on (default 127.0.0.1:9095)
    SMS_NOTIFIER_TOKEN                      optional: POSTs must carry `Authorization: Bearer <token>`
    TWILIO_API_BASE_URL                     optional: another API base URL (an egress proxy, a test stand-in)

POST /alertmanager  an Alertmanager webhook payload; answers 200 once every number was texted and
                    502 otherwise, so Alertmanager retries and counts the failure in
                    alertmanager_notifications_failed_total (watched by AlertmanagerNotificationsFailing);
                    401 without the bearer token, when one is set.
GET  /health        200 when the process is up.

The standard library and twilio only, unlike the rest of alert_rules/: the alertmanager role copies
this one file to the monitoring host and runs it with Debian's python3 and python3-twilio, where
there is no wheelhouse and Debian 12's pydantic is 1.10. So Config checks the environment itself.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twilio.base.exceptions import TwilioException
from twilio.rest import Client

LOG = logging.getLogger("sms_notifier")
# One SMS segment is 160 GSM characters; two segments keep a page readable and cheap.
MAX_BODY = 320
MAX_REQUEST_BYTES = 1 << 20


class ConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class Config:
    account_sid: str
    auth_token: str
    sms_from: str
    sms_to: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 9095
    api_base_url: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SMS_FROM", "SMS_TO") if not env.get(k)]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: put the Twilio credentials and numbers in the vault "
                "(alertmanager role variables) and restart the notifier"
            )
        numbers = tuple(n.strip() for n in env["SMS_TO"].split(",") if n.strip())
        for number in (env["SMS_FROM"], *numbers):
            if not number.startswith("+") or not number[1:].isdigit():
                raise ConfigError(f"SMS_FROM/SMS_TO: {number!r} is not an E.164 number; write it like +15551234567")
        listen = env.get("SMS_NOTIFIER_LISTEN", "127.0.0.1:9095")
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"SMS_NOTIFIER_LISTEN={listen!r} must be host:port, e.g. 127.0.0.1:9095")
        token = env.get("SMS_NOTIFIER_TOKEN") or None
        if token is not None and len(token) < 16:
            raise ConfigError("SMS_NOTIFIER_TOKEN is shorter than 16 characters; use the generated sms_notifier_token")
        return cls(
            env["TWILIO_ACCOUNT_SID"],
            env["TWILIO_AUTH_TOKEN"],
            env["SMS_FROM"],
            numbers,
            host,
            int(port),
            env.get("TWILIO_API_BASE_URL") or None,
            token,
        )


def message_for(payload: dict[str, Any]) -> str:
    """A short text: status, count, then one line per alert (name, severity, instance, summary)."""
    alerts = payload.get("alerts") or []
    status = str(payload.get("status", "firing")).upper()
    lines = [f"[{status}:{len(alerts)}] ScaleMart"]
    for alert in alerts:
        labels = alert.get("labels", {})
        ann = alert.get("annotations", {})
        where = labels.get("instance") or labels.get("env") or ""
        lines.append(
            f"{labels.get('alertname', '?')} {labels.get('severity', '')} {where}: {ann.get('summary', '')}".strip()
        )
    body = "\n".join(lines)
    return body if len(body) <= MAX_BODY else body[: MAX_BODY - 1] + "…"


class Notifier:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.client = Client(config.account_sid, config.auth_token)
        if config.api_base_url:
            self.client.api.base_url = config.api_base_url.rstrip("/")

    def send(self, payload: dict[str, Any]) -> list[str]:
        """Text every number; returns the errors (empty when all went out)."""
        body = message_for(payload)
        errors = []
        for number in self.config.sms_to:
            try:
                msg = self.client.messages.create(to=number, from_=self.config.sms_from, body=body)
                LOG.info("sent SMS %s to %s", msg.sid, number)
            except TwilioException as exc:
                LOG.error("Twilio refused the SMS to %s: %s", number, exc)
                errors.append(f"{number}: {exc}")
            except OSError as exc:
                LOG.error("cannot reach Twilio for %s: %s", number, exc)
                errors.append(f"{number}: {exc}")
        return errors


def make_handler(notifier: Notifier) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "scalemart-sms-notifier"

        def _reply(self, status: HTTPStatus, text: str) -> None:
            data = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                self._reply(HTTPStatus.OK, "ok")
            else:
                self._reply(HTTPStatus.NOT_FOUND, "POST Alertmanager webhooks to /alertmanager")

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/alertmanager":
                self._reply(HTTPStatus.NOT_FOUND, "POST Alertmanager webhooks to /alertmanager")
                return
            token = notifier.config.token
            if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                self._reply(HTTPStatus.UNAUTHORIZED, "send `Authorization: Bearer <sms_notifier_token>`")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_REQUEST_BYTES:
                self._reply(HTTPStatus.BAD_REQUEST, "send a JSON Alertmanager webhook body")
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except json.JSONDecodeError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}")
                return
            if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                self._reply(HTTPStatus.BAD_REQUEST, "body has no `alerts` list: is this an Alertmanager webhook?")
                return
            errors = notifier.send(payload)
            if errors:
                self._reply(HTTPStatus.BAD_GATEWAY, "; ".join(errors))
            else:
                self._reply(HTTPStatus.OK, f"texted {len(notifier.config.sms_to)} number(s)")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
            LOG.info("%s " + format, self.address_string(), *args)

    return Handler


def serve(config: Config) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((config.host, config.port), make_handler(Notifier(config)))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"sms_notifier: {exc}", file=sys.stderr)
        return 2
    server = serve(config)
    LOG.info("listening on %s:%d, texting %d number(s)", config.host, config.port, len(config.sms_to))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
