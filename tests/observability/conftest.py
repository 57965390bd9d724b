"""Fixtures for the observability tests: real promtool/amtool, Prometheus, Alertmanager, exporters,
redis-server, FerretDB and the app, each on a free loopback port in a temp dir."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
TOOLS = ROOT / ".tools" / "bin"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def binary(name: str, package: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: run `make bootstrap` (installs the Debian package {package})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any] | None = None, log: Path | None = None,
              timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:\n{tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s:\n{tail}")


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen[Any] | None = None,
              log: Path | None = None) -> None:
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
        self.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

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
