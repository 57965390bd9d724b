"""`make bootstrap` is idempotent and fails with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.toolchain.conftest import ROOT

# The interpreter itself, not a shim: some tests run with a PATH that hides the shim's helpers.
PYTHON = str(Path(sys.base_prefix, "bin", "python3"))


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(ROOT / "toolchain" / "bootstrap.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_second_bootstrap_rebuilds_nothing() -> None:
    start = time.monotonic()
    proc = _run()
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for word in ("building", "installing", "creating", "debootstrap"):
        assert word not in proc.stdout, f"a warm bootstrap did work ({word!r}):\n{proc.stdout}"
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"{step}" in proc.stdout and "done in" in proc.stdout
    print(f"warm bootstrap: {elapsed:.1f} s")
    assert elapsed < 30, f"a warm bootstrap took {elapsed:.1f} s (the bound is 30 s):\n{proc.stdout}"


def test_dead_docker_engine_gives_one_line_with_the_fix() -> None:
    proc = _run("--only", "docker", env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no Docker engine answers at DOCKER_HOST=tcp://127.0.0.1:1" in lines[0]
    assert "fix:" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_docker_cli_gives_one_line_with_the_fix() -> None:
    path = ":".join(p for p in os.environ["PATH"].split(":") if not Path(p, "docker").exists())
    proc = _run("--only", "docker", env={"PATH": path})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bootstrap failed: `docker` is not installed — fix: apt-get install -y docker.io"
    ], proc.stderr


def test_missing_go_on_a_cold_cache_gives_one_line_with_the_fix(tmp_path: Path) -> None:
    # An empty cache forces a build; a PATH without Go makes it impossible.
    path = ":".join(p for p in os.environ["PATH"].split(":") if not Path(p, "go").exists())
    proc = _run("--only", "tools", env={"SCALEMART_CACHE": str(tmp_path), "PATH": path})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "`go` is not installed" in lines[0] and "fix:" in lines[0], proc.stderr


def test_engine_settings_are_merged_into_daemon_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolchain import bootstrap

    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-driver": "journald"}')
    monkeypatch.setattr(bootstrap, "DAEMON_JSON", daemon)
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 0)
    assert bootstrap.engine_settings() is True
    assert json.loads(daemon.read_text()) == {"log-driver": "journald", "userland-proxy": False}
    assert bootstrap.engine_settings() is False, "a second bootstrap must not rewrite the file (nor restart the engine)"


def test_unparseable_daemon_json_is_named_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolchain import bootstrap

    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-driver": ')
    monkeypatch.setattr(bootstrap, "DAEMON_JSON", daemon)
    with pytest.raises(bootstrap.ToolchainError, match=r"daemon\.json is not JSON") as err:
        bootstrap.engine_settings()
    assert err.value.fix == f"fix or remove {daemon}"
    assert daemon.read_text() == '{"log-driver": ', "a file the bootstrap cannot read must be left as it was"
