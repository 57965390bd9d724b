"""The `dev` environment, brought up once per test session with the receivers of tests/e2e/sinks.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.sinks import Sinks
from toolchain.common import BUILD

ROOT = Path(__file__).resolve().parents[2]
ENV = "dev"
# The environment's build folder: inventory, outputs, logs, load reports, screenshots.
ENV_BUILD = BUILD / ENV
PY = str(ROOT / ".venv" / "bin" / "python")


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


class Dev:
    def __init__(self, sinks: Sinks, up_output: str, up_seconds: float, vars_file: Path) -> None:
        self.sinks = sinks
        self.up_output = up_output
        self.up_seconds = up_seconds
        self.vars_file = vars_file
        self.outputs: dict[str, Any] = json.loads((ENV_BUILD / "outputs.json").read_text())

    def container(self, group: str, index: int = 0) -> str:
        inventory = yaml.safe_load((ENV_BUILD / "inventory.yml").read_text())
        hosts = sorted((inventory["all"]["children"][group].get("hosts") or {}).items())
        return str(hosts[index][1].get("ansible_host", hosts[index][0]))


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    # The network must exist before the receivers can bind its gateway address.
    code, out, _ = _run("-m", "stack.cli", "up", ENV)
    assert code == 0, f"stack up failed:\n{out[-4000:]}"
    gateway = json.loads((ENV_BUILD / "outputs.json").read_text())["network"]["gateway"]
    sinks = Sinks(gateway)
    vars_file = tmp_path_factory.mktemp("e2e") / "site-vars.yml"
    vars_file.write_text(
        yaml.safe_dump(
            {"alertmanager_recipients": sinks.recipients(), "alertmanager_sms_notifier": sinks.sms_notifier()}
        )
    )
    code, out, took = _run("-m", "ops", "up", ENV, env={"SCALEMART_EXTRA_VARS": str(vars_file)})
    (ENV_BUILD / "logs").mkdir(parents=True, exist_ok=True)
    (ENV_BUILD / "logs" / "e2e-up.log").write_text(out)
    assert code == 0, f"`make up ENV={ENV}` failed:\n{out[-6000:]}"
    print(f"\nmake up {ENV}: {took:.0f} s", file=sys.stderr)
    try:
        yield Dev(sinks, out, took, vars_file)
    finally:
        sinks.close()
        if os.environ.get("CI"):
            # CI leaves the machine as it found it: the next clone has no state for these hosts.
            code, out, _ = _run("-m", "ops", "down", ENV, "--purge")
            assert code == 0, f"make down ENV={ENV} PURGE=1 failed:\n{out[-3000:]}"
