"""Notification receivers run on the control machine for the end-to-end alert tests.

They listen on the environment network's gateway address, which the hosts reach and nothing
outside this machine does: an SMTP sink, a webhook receiver (also the Watchdog heartbeat) and a
stand-in for Twilio's REST API (Twilio itself cannot be reached from here), which the SMS notifier
the alertmanager role runs on the monitoring host is pointed at.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller

from tests.net import free_port

TWILIO_SID = "AC" + "0" * 32


@dataclass
class Received:
    at: float
    kind: str  # email | webhook | heartbeat | sms
    body: dict[str, Any] = field(default_factory=dict)


class Inbox:
    """Everything every receiver got, in arrival order, with monotonic timestamps."""

    def __init__(self) -> None:
        self.items: list[Received] = []
        self.lock = threading.Lock()

    def add(self, kind: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.items.append(Received(time.monotonic(), kind, body))

    def since(self, t0: float, kind: str) -> list[Received]:
        with self.lock:
            return [r for r in self.items if r.at >= t0 and r.kind == kind]


class _Http:
    def __init__(self, host: str, inbox: Inbox, answer: Any) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"form": raw.decode(errors="replace")}
                kind = (
                    "heartbeat"
                    if self.path.startswith("/heartbeat")
                    else ("sms" if "/Messages" in self.path else "webhook")
                )
                inbox.add(kind, body if isinstance(body, dict) else {"value": body})
                status, payload = answer(self.path)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        _ = sink

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sms_text(body: dict[str, Any], status: str) -> str:
    """The text of an SMS the notifier sent to the Twilio stand-in when it is a `status` one ("firing" or
    "resolved": the notifier starts each with [FIRING:n] or [RESOLVED:n]), else ""."""
    text = parse_qs(body.get("form", "")).get("Body", [""])[0]
    return text if text.startswith(f"[{status.upper()}:") else ""


def _twilio_answer(path: str) -> tuple[int, dict[str, Any]]:
    return 201, {
        "sid": "SM" + "1" * 32,
        "account_sid": TWILIO_SID,
        "status": "queued",
        "to": "+15550000001",
        "from": "+15550009999",
        "body": "x",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/SM.json",
    }


class Sinks:
    def __init__(self, host: str) -> None:
        self.host = host
        self.inbox = Inbox()
        inbox = self.inbox

        class Mailbox:
            async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def] # noqa: N802
                msg = message_from_bytes(envelope.content)
                inbox.add(
                    "email",
                    {
                        "to": envelope.rcpt_tos,
                        "subject": msg.get("Subject", ""),
                        "text": envelope.content.decode(errors="replace"),
                    },
                )
                return "250 OK"

        # aiosmtpd checks its listener by connecting to it, so it needs a real port, not 0.
        self.smtp_port = free_port(host)
        self.smtp = Controller(Mailbox(), hostname=host, port=self.smtp_port)
        self.smtp.start()
        self.web = _Http(host, self.inbox, lambda path: (200, {"ok": True}))
        self.twilio = _Http(host, self.inbox, _twilio_answer)

    def recipients(self) -> dict[str, Any]:
        """The alertmanager recipients mapping (alert_rules/alertmanager.py) aimed at these sinks."""
        return {
            "smtp": {
                "smarthost": f"{self.host}:{self.smtp_port}",
                "from": "alerts@scalemart.test",
                "require_tls": False,
            },
            "email": {s: [f"{s}@scalemart.test"] for s in ("critical", "warning", "info")},
            "webhooks": {s: [f"http://{self.host}:{self.web.port}/hook/{s}"] for s in ("critical", "warning")},
            "heartbeat_url": f"http://{self.host}:{self.web.port}/heartbeat",
            "timing": {"group_wait": "5s", "group_interval": "20s", "repeat_interval": "1h"},
        }

    def sms_notifier(self) -> dict[str, Any]:
        """alertmanager_sms_notifier: the role's notifier, texting through the Twilio stand-in."""
        return {
            "account_sid": TWILIO_SID,
            "auth_token": "stand-in-auth-token",
            "from": "+15550009999",
            "to": ["+15550000001"],
            "api_base_url": f"http://{self.host}:{self.twilio.port}",
        }

    def close(self) -> None:
        self.smtp.stop()
        self.web.close()
        self.twilio.close()
