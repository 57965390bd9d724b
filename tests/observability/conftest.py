"""Fixtures for the observability tests: real promtool/amtool, Prometheus, Alertmanager, exporters,
redis-server, FerretDB and the app, each on a free loopback port in a temp dir."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import free_port, wait_port  # noqa: F401 - re-exported to this area
from toolchain.common import TOOLS_BIN

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
TOOLS = TOOLS_BIN
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def binary(name: str, package: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: run `make bootstrap` (installs the Debian package {package})")
    return path


def wait_http(
    url: str, timeout: float = 30, proc: subprocess.Popen[Any] | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s ({last}):\n{tail}")


class Proc:
    """A background process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; stopped at its end even when it fails."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture(scope="session")
def promtool() -> str:
    return binary("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return binary("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="session")
def alerting_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rule files and promtool tests built from the shipped thresholds, as the prometheus role gets them."""
    from alert_rules.build import build

    out = tmp_path_factory.mktemp("alerting")
    build(out)
    return out


class Recorder:
    """A loopback HTTP server that records every request and answers with a canned response.

    Stands in for services that cannot run here (Twilio's REST API) and for webhook receivers."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, Any]] = []
        self.status = status
        self.body = body or {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                data = json.dumps(recorder.body).encode()
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "stand-in-auth-token-not-real"


def twilio_message_json(to: str = "+15550000001") -> dict[str, Any]:
    return {
        "sid": "SM" + "1" * 32,
        "account_sid": TWILIO_SID,
        "to": to,
        "from": "+15550009999",
        "body": "x",
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/SM.json",
    }


@pytest.fixture
def twilio_stand_in() -> Iterator[Recorder]:
    """A local HTTP server answering like Twilio's Messages endpoint (Twilio itself is not reachable)."""
    rec = Recorder(201, twilio_message_json())
    yield rec
    rec.close()


class Alertmanager:
    """prometheus-alertmanager on a free loopback port, clustering off, state in a temp dir."""

    def __init__(self, config_text: str, workdir: Path, procs: list[Proc]) -> None:
        self.port = free_port()
        config = workdir / "alertmanager.yml"
        config.write_text(config_text)
        (workdir / "am-data").mkdir(exist_ok=True)
        self.proc = Proc(
            "alertmanager",
            [
                binary("prometheus-alertmanager", "prometheus-alertmanager"),
                f"--config.file={config}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            workdir,
        )
        procs.append(self.proc)
        wait_http(f"{self.url}/-/ready", proc=self.proc.proc, log=self.proc.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, *alerts: dict[str, Any]) -> None:
        r = httpx.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10)
        assert r.status_code == 200, r.text
