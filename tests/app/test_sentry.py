"""Error tracking: with a DSN set, unhandled errors and sampled traces reach Sentry with environment and release.

Sentry itself cannot run here, so the DSN points at a local HTTP receiver that records the envelopes the
real sentry-sdk sends (the `..._against_sentry_stand_in` in the name says so).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.app.conftest import PYTHON, free_port, stop, wait_port

SERVE_WITH_FAILING_ROUTE = """
import uvicorn
from scalemart.api import create_app

app = create_app()

@app.get("/api/debug/boom")
async def boom():
    raise RuntimeError("boom for the sentry test")

uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


class Receiver(BaseHTTPRequestHandler):
    envelopes: list[list[dict[str, Any]]] = []
    paths: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":  # sentry-sdk prefers brotli when the module is importable
            import brotli

            body = brotli.decompress(body)
        items = []
        for line in body.splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:
                items.append({"_raw": line[:200].decode(errors="replace")})
        Receiver.envelopes.append(items)
        Receiver.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_unhandled_error_and_trace_reach_the_against_sentry_stand_in(make_env: Any, tmp_path: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    dsn = f"http://publickey@127.0.0.1:{receiver.server_address[1]}/42"
    env = make_env(
        sentry_dsn=dsn,
        sentry_traces_sample_rate=1.0,
        release="7.7.7-sentry",
        environment="staging",
        admin_token="k" + "9f2c4e81a7b3d6f05e9c1a24b8d7",
    )
    port = free_port()
    log = tmp_path / "sentry-app.log"
    proc = subprocess.Popen(
        [str(PYTHON), "-c", SERVE_WITH_FAILING_ROUTE.replace("{port}", str(port))],
        env=env.environ(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, log=log)
        r = httpx.get(f"http://127.0.0.1:{port}/api/debug/boom")
        assert r.status_code == 500 and r.json()["error"] == "internal_error"
        assert "boom" not in r.text  # details go to Sentry and the log, not to the client
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = [i for env_ in Receiver.envelopes for i in env_]
            events = [i for i in items if i.get("exception")]
            traces = [i for i in items if i.get("type") == "transaction" and "contexts" in i]
            if events and any(t.get("transaction") == "/health/live" for t in traces):
                break
            time.sleep(0.2)
    finally:
        stop(proc)
        receiver.shutdown()
    assert all(p == "/api/42/envelope/" for p in Receiver.paths), Receiver.paths
    assert events, f"no error event received: {Receiver.envelopes}\n{log.read_text()[-2000:]}"
    event = events[0]
    exc = event["exception"]["values"][-1]
    assert (exc["type"], exc["value"]) == ("RuntimeError", "boom for the sentry test")
    assert (event["environment"], event["release"]) == ("staging", "7.7.7-sentry")
    assert traces, "no transaction (trace) received"
    assert {t["environment"] for t in traces} == {"staging"} and {t["release"] for t in traces} == {"7.7.7-sentry"}
    assert any(t.get("transaction") == "/health/live" for t in traces), [t.get("transaction") for t in traces]
