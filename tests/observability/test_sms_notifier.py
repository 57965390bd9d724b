"""The SMS notifier: Alertmanager webhook in, Twilio REST calls out (to a local stand-in for Twilio)."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from alert_rules.sms_notifier import MAX_BODY, Config, ConfigError, message_for, serve
from tests.observability.conftest import PYTHON, ROOT, TWILIO_SID, TWILIO_TOKEN, Recorder

NUMBERS = ("+15550000001", "+15550000002")
PAYLOAD = {
    "version": "4",
    "status": "firing",
    "receiver": "critical",
    "groupKey": '{}:{alertname="RedisDown"}',
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "RedisDown", "severity": "critical", "instance": "data-1:9121"},
            "annotations": {"summary": "Redis is down: stock and carts are unavailable."},
        }
    ],
}


def config_for(twilio: Recorder) -> Config:
    return Config(TWILIO_SID, TWILIO_TOKEN, "+15550009999", NUMBERS, "127.0.0.1", 0, twilio.url)


@pytest.fixture
def notifier_url(twilio_stand_in: Recorder) -> Iterator[str]:
    server = serve(config_for(twilio_stand_in))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_alert_texts_every_number_against_twilio_stand_in(notifier_url: str, twilio_stand_in: Recorder) -> None:
    r = httpx.post(f"{notifier_url}/alertmanager", json=PAYLOAD, timeout=30)
    assert r.status_code == 200, r.text
    assert len(twilio_stand_in.requests) == len(NUMBERS)
    sent_to = []
    for req in twilio_stand_in.requests:
        assert req["path"] == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        auth = base64.b64decode(req["headers"]["Authorization"].split()[1]).decode()
        assert auth == f"{TWILIO_SID}:{TWILIO_TOKEN}"
        form = parse_qs(req["body"])
        assert form["From"] == ["+15550009999"]
        assert "RedisDown critical data-1:9121" in form["Body"][0]
        assert form["Body"][0].startswith("[FIRING:1] ScaleMart")
        sent_to += form["To"]
    assert sorted(sent_to) == sorted(NUMBERS)


def test_twilio_refusal_answers_502_so_alertmanager_retries_against_twilio_stand_in(
    notifier_url: str, twilio_stand_in: Recorder
) -> None:
    twilio_stand_in.status = 400
    twilio_stand_in.body = {
        "code": 21211,
        "message": "The 'To' number is not a valid phone number.",
        "more_info": "",
        "status": 400,
    }
    r = httpx.post(f"{notifier_url}/alertmanager", json=PAYLOAD, timeout=30)
    assert r.status_code == 502
    assert "+15550000001" in r.text and "not a valid phone number" in r.text


@pytest.mark.parametrize("body", [b"not json", b'{"status": "firing"}'])
def test_a_body_that_is_not_an_alertmanager_webhook_is_refused(
    notifier_url: str, twilio_stand_in: Recorder, body: bytes
) -> None:
    r = httpx.post(f"{notifier_url}/alertmanager", content=body, timeout=10)
    assert r.status_code == 400
    assert twilio_stand_in.requests == []


def test_with_a_token_only_bearers_are_served_against_twilio_stand_in(twilio_stand_in: Recorder) -> None:
    cfg = Config(
        TWILIO_SID,
        TWILIO_TOKEN,
        "+15550009999",
        NUMBERS,
        "127.0.0.1",
        0,
        twilio_stand_in.url,
        token="notifier-token-0123456789",
    )
    server = serve(cfg)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alertmanager"
    try:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            r = httpx.post(url, json=PAYLOAD, headers=headers, timeout=30)
            assert r.status_code == 401 and "sms_notifier_token" in r.text
        assert twilio_stand_in.requests == []
        r = httpx.post(url, json=PAYLOAD, headers={"Authorization": "Bearer notifier-token-0123456789"}, timeout=30)
        assert r.status_code == 200, r.text
        assert len(twilio_stand_in.requests) == len(NUMBERS)
    finally:
        server.shutdown()
        server.server_close()


def test_a_short_token_is_refused() -> None:
    env = {
        "TWILIO_ACCOUNT_SID": TWILIO_SID,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "SMS_FROM": "+15550009999",
        "SMS_TO": "+15550000001",
        "SMS_NOTIFIER_TOKEN": "short",
    }
    with pytest.raises(ConfigError, match="SMS_NOTIFIER_TOKEN"):
        Config.from_env(env)


def test_health_answers(notifier_url: str) -> None:
    assert httpx.get(f"{notifier_url}/health", timeout=10).status_code == 200


def test_long_alert_groups_fit_two_sms_segments() -> None:
    many = {"status": "firing", "alerts": [PAYLOAD["alerts"][0]] * 20}
    text = message_for(many)
    assert len(text) <= MAX_BODY
    assert text.startswith("[FIRING:20]")


def test_missing_configuration_names_the_variables() -> None:
    proc = subprocess.run(
        [str(PYTHON), "-m", "alert_rules.sms_notifier"],
        cwd=ROOT,
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SMS_FROM", "SMS_TO"):
        assert name in proc.stderr


def test_numbers_must_be_e164() -> None:
    env = {
        "TWILIO_ACCOUNT_SID": TWILIO_SID,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "SMS_FROM": "+15550009999",
        "SMS_TO": "+15550000001,0044 1234",
    }
    with pytest.raises(ConfigError, match="E.164"):
        Config.from_env(env)


def test_the_notifier_needs_only_the_standard_library_and_twilio() -> None:
    """It runs as one file on Debian's python3 with python3-twilio (roles/alertmanager): no pydantic there."""
    import ast
    import sys

    tree = ast.parse((ROOT / "alert_rules" / "sms_notifier.py").read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert imported - sys.stdlib_module_names == {"twilio"}
