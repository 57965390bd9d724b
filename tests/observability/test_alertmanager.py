"""Alertmanager routing rendered from recipients: amtool-clean, routes per severity, inhibition and
delivery checked on a real Alertmanager (real SMTP server, real notifier, Twilio stand-in)."""

from __future__ import annotations

import copy
import subprocess
import time
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from alert_rules.alertmanager import RecipientsError, config, render, webhook_kind
from tests.observability.conftest import (
    PYTHON,
    ROOT,
    TWILIO_SID,
    TWILIO_TOKEN,
    Alertmanager,
    Proc,
    Recorder,
    free_port,
    wait_http,
)

SLACK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
DISCORD = "https://discord.com/api/webhooks/000000000000000000/stand-in"
RECIPIENTS: dict[str, Any] = {
    "smtp": {"smarthost": "127.0.0.1:2525", "from": "alerts@shop.example", "require_tls": False},
    "email": {"critical": ["oncall@shop.example"], "warning": ["team@shop.example"], "info": ["shop@shop.example"]},
    "webhooks": {"critical": [SLACK, "http://127.0.0.1:9/hook"], "warning": [DISCORD]},
    "sms_notifier_url": "http://127.0.0.1:9095/alertmanager",
    "heartbeat_url": "http://127.0.0.1:9/heartbeat",
}


@pytest.fixture
def am_config(tmp_path: Path) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(RECIPIENTS))
    return path


def test_rendered_config_passes_amtool_check_config(am_config: Path, amtool: str) -> None:
    proc = subprocess.run([amtool, "check-config", str(am_config)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "RedisDown", "severity": "critical", "instance": "data-1:9121"}, "critical"),
        ({"alertname": "HostHighCpuUsage", "severity": "warning", "instance": "app-1:9100"}, "warning"),
        ({"alertname": "ScaleMartLowStock", "severity": "info", "product": "p-1"}, "info"),
        ({"alertname": "Watchdog", "severity": "info"}, "heartbeat"),
        ({"alertname": "SomethingUnlabelled"}, "info"),
    ],
)
def test_amtool_routes_each_severity_to_its_receiver(
    am_config: Path, amtool: str, labels: dict[str, str], receiver: str
) -> None:
    args = [f"{k}={v}" for k, v in labels.items()]
    proc = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={am_config}", f"--verify.receivers={receiver}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"{labels} went to {proc.stdout.strip()}, expected {receiver}"


def test_receivers_follow_severity() -> None:
    receivers = {r["name"]: r for r in config(RECIPIENTS)["receivers"]}
    crit, warn, info = receivers["critical"], receivers["warning"], receivers["info"]
    assert crit["email_configs"][0]["to"] == "oncall@shop.example"
    assert [c["api_url"] for c in crit["slack_configs"]] == [SLACK]
    # generic webhook plus the SMS notifier
    assert [c["url"] for c in crit["webhook_configs"]] == ["http://127.0.0.1:9/hook", RECIPIENTS["sms_notifier_url"]]
    assert warn["email_configs"][0]["to"] == "team@shop.example"
    assert [c["webhook_url"] for c in warn["discord_configs"]] == [DISCORD]
    assert "webhook_configs" not in warn, "warnings must not page by SMS"
    assert set(info) == {"name", "email_configs"}
    assert receivers["heartbeat"]["webhook_configs"][0]["url"] == RECIPIENTS["heartbeat_url"]


def test_sms_notifier_token_becomes_the_webhook_bearer() -> None:
    hooks = {r["name"]: r for r in config({**RECIPIENTS, "sms_notifier_token": "t" * 20})["receivers"]}
    sms = hooks["critical"]["webhook_configs"][-1]
    assert sms["http_config"] == {"authorization": {"type": "Bearer", "credentials": "t" * 20}}
    assert "http_config" not in hooks["critical"]["webhook_configs"][0]


def test_grouping_and_inhibition_rule() -> None:
    cfg = config(RECIPIENTS)
    assert cfg["route"]["group_by"] == ["alertname", "instance"]
    assert cfg["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "instance"],
        }
    ]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (SLACK, "slack"),
        (DISCORD, "discord"),
        ("https://discordapp.com/api/webhooks/1/x", "discord"),
        ("https://discord.com/channels/1", "webhook"),
        ("https://chat.internal/hooks/x", "webhook"),
    ],
)
def test_webhook_urls_are_recognised(url: str, kind: str) -> None:
    assert webhook_kind(url) == kind


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["smtp"].pop("from"), "smtp.from"),
        (lambda r: r["smtp"].update(smarthost="mail"), "smtp.smarthost"),
        (lambda r: r["email"].update(critical=[]), "email.critical"),
        (lambda r: r["email"].update(info=["not-an-address"]), "email.info"),
        (lambda r: r["webhooks"].update(info=[SLACK]), "webhooks.info"),
        (lambda r: r["webhooks"].update(warning=["ftp://x"]), "webhooks.warning[0]"),
        (lambda r: r.pop("sms_notifier_url"), "sms_notifier_url"),
        (lambda r: r.update(sms_notifier_token="short"), "sms_notifier_token"),
        (lambda r: r.update(timing={"group_wait": "soon"}), "timing.group_wait"),
    ],
)
def test_bad_recipients_name_the_field(mutate, field: str) -> None:
    r = copy.deepcopy(RECIPIENTS)
    mutate(r)
    with pytest.raises(RecipientsError) as err:
        render(r)
    assert err.value.field == field
    assert str(err.value).startswith(f"recipients.{field}: ")


def test_cli_renders_from_stdin_with_private_mode(tmp_path: Path, amtool: str) -> None:
    out = tmp_path / "am" / "alertmanager.yml"
    proc = subprocess.run(
        [str(PYTHON), "-m", "alert_rules", "alertmanager", "--recipients", "-", "--out", str(out)],
        cwd=ROOT,
        input=yaml.safe_dump(RECIPIENTS),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_mode & 0o077 == 0, "the file holds credentials: owner-only"
    assert subprocess.run([amtool, "check-config", str(out)], capture_output=True).returncode == 0


def _alert(name: str, severity: str, instance: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "instance": instance, "env": "test"},
        "annotations": {"summary": f"{name} test", "description": f"{name} on {instance}"},
    }


def test_critical_inhibits_warning_of_same_alertname_and_instance(tmp_path: Path, amtool: str, procs) -> None:
    am = Alertmanager(render(RECIPIENTS), tmp_path, procs)
    am.post(
        _alert("ScaleMartHighErrorRate", "critical", "app-1:8000"),
        _alert("ScaleMartHighErrorRate", "warning", "app-1:8000"),
        _alert("ScaleMartHighErrorRate", "warning", "app-2:8000"),
        _alert("HostHighCpuUsage", "warning", "app-1:8000"),
    )

    def query(*flags: str) -> set[tuple[str, str, str]]:
        proc = subprocess.run(
            [amtool, "alert", "query", f"--alertmanager.url={am.url}", "-o", "json", *flags],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        return {
            (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["instance"])
            for a in yaml.safe_load(proc.stdout)
            if (not flags) or a["status"]["inhibitedBy"]
        }

    deadline = time.monotonic() + 20
    inhibited: set[tuple[str, str, str]] = set()
    while time.monotonic() < deadline:  # inhibition is evaluated as alerts arrive
        inhibited = query("--inhibited")
        if inhibited:
            break
        time.sleep(0.2)
    assert inhibited == {("ScaleMartHighErrorRate", "warning", "app-1:8000")}
    assert len(query()) == 3, "amtool lists active alerts only; the inhibited one is hidden"


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def test_critical_alert_reaches_email_webhook_and_sms_against_twilio_stand_in(
    tmp_path: Path, procs, twilio_stand_in: Recorder
) -> None:
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    hooks = Recorder(200, {})
    try:
        sms_port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "SMS_FROM": "+15550009999",
            "SMS_TO": "+15550000001",
            "SMS_NOTIFIER_LISTEN": f"127.0.0.1:{sms_port}",
            "TWILIO_API_BASE_URL": twilio_stand_in.url,
            "PYTHONPATH": str(ROOT),
            "SMS_NOTIFIER_TOKEN": "notifier-token-0123456789",
        }
        notifier = Proc("sms-notifier", [str(PYTHON), "-m", "alert_rules.sms_notifier"], tmp_path, env)
        procs.append(notifier)
        wait_http(f"http://127.0.0.1:{sms_port}/health", proc=notifier.proc, log=notifier.log)
        recipients = copy.deepcopy(RECIPIENTS)
        recipients["smtp"]["smarthost"] = f"127.0.0.1:{smtp.port}"
        recipients["webhooks"] = {"critical": [f"{hooks.url}/critical"], "warning": [f"{hooks.url}/warning"]}
        recipients["sms_notifier_url"] = f"http://127.0.0.1:{sms_port}/alertmanager"
        recipients["sms_notifier_token"] = env["SMS_NOTIFIER_TOKEN"]  # Alertmanager must send it
        recipients["heartbeat_url"] = f"{hooks.url}/heartbeat"
        recipients["timing"] = {"group_wait": "1s", "group_interval": "1s"}
        am = Alertmanager(render(recipients), tmp_path, procs)
        am.post(
            _alert("RedisDown", "critical", "data-1:9121"),
            _alert("HostHighCpuUsage", "warning", "app-1:9100"),
            _alert("ScaleMartLowStock", "info", "app-1:8000"),
        )

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(mailbox.messages) >= 3 and twilio_stand_in.requests and len(hooks.requests) >= 2:
                break
            time.sleep(0.2)
        mail = {tuple(rcpt): msg["Subject"] for rcpt, msg in mailbox.messages}
        assert mail.get(("oncall@shop.example",), "").startswith("[FIRING] critical: RedisDown"), mail
        assert "HostHighCpuUsage" in mail.get(("team@shop.example",), ""), mail
        assert "ScaleMartLowStock" in mail.get(("shop@shop.example",), ""), mail
        paths = sorted(r["path"] for r in hooks.requests)
        assert paths == ["/critical", "/warning"], paths
        assert len(twilio_stand_in.requests) == 1, "only the critical alert pages by SMS"
        assert "RedisDown" in twilio_stand_in.requests[0]["body"]
    finally:
        hooks.close()
        smtp.stop()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(heartbeat_ulr="http://127.0.0.1:9/heartbeat"), "heartbeat_ulr"),
        (lambda r: r["smtp"].update(password="x"), "smtp.password"),
        (lambda r: r["email"].update(page=["oncall@shop.example"]), "email.page"),
    ],
)
def test_an_unknown_field_is_refused_by_name(mutate, field: str) -> None:
    r = copy.deepcopy(RECIPIENTS)
    mutate(r)
    with pytest.raises(RecipientsError) as err:
        render(r)
    assert err.value.field == field
    assert str(err.value).startswith(f"recipients.{field}: is not a known field (fix: use ")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r["email"].pop("warning"),
            "recipients.email.warning: must list at least one address (fix: add an address to email.warning)",
        ),
        (
            lambda r: r["webhooks"].update(critical=[SLACK, "nope"]),
            "recipients.webhooks.critical[1]: must be an http(s) URL, got 'nope' (fix: write the full URL, https://...)",
        ),
        (
            lambda r: (r["smtp"].update(smarthost="mail"), r["smtp"].pop("from")),
            "recipients.smtp.from: is missing (fix: set smtp.from in the alertmanager vault variables)",
        ),
        (
            lambda r: r.update(timing=["30s"]),
            "recipients.timing: must be a mapping (fix: write e.g. timing: {group_wait: 30s, repeat_interval: 4h})",
        ),
    ],
)
def test_messages_name_field_problem_and_fix(mutate, message: str) -> None:
    r = copy.deepcopy(RECIPIENTS)
    mutate(r)
    with pytest.raises(RecipientsError) as err:
        render(r)
    assert str(err.value) == message


def test_empty_optional_fields_count_as_absent() -> None:
    r = copy.deepcopy(RECIPIENTS)
    r.update(webhooks=None, timing=None, heartbeat_url=None, sms_notifier_token=None)
    r["smtp"].update(auth_username="", auth_password=None)
    cfg = config(r)
    assert "smtp_auth_username" not in cfg["global"] and "smtp_auth_password" not in cfg["global"]
    receivers = {x["name"]: x for x in cfg["receivers"]}
    assert receivers["heartbeat"] == {"name": "heartbeat"}
    assert [c["url"] for c in receivers["critical"]["webhook_configs"]] == [RECIPIENTS["sms_notifier_url"]]
