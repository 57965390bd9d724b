"""Fixtures for the foundation tests: real FerretDB, real Docker, real Pulumi CLI."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import free_port, wait_port  # noqa: F401 - re-exported to this area
from toolchain.common import ROOT, TOOLS_BIN, tool_env

TOOLS = TOOLS_BIN


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make bootstrap`")
    return str(path)


@pytest.fixture(scope="session")
def ferretdb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("ferretdb")
    port = free_port()
    log = (data / "ferretdb.log").open("w")
    proc = subprocess.Popen(
        [
            tool("ferretdb"),
            "--handler=sqlite",
            f"--sqlite-url=file:{data}/",
            f"--state-dir={data}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--debug-addr=127.0.0.1:{free_port()}",
            "--telemetry=disable",
            "--log-level=WARN",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port)
        yield f"mongodb://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run `make bootstrap` (it starts dockerd)")


@pytest.fixture(scope="session")
def base_image(docker_ready: None) -> str:
    proc = subprocess.run(
        ["python3", "-c", "from toolchain import image; print(image.tag())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    ref = proc.stdout.strip()
    if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0:
        pytest.fail(f"base image {ref} is missing: run `make bootstrap`")
    return ref


def pulumi_env(home: Path) -> dict[str, str]:
    return {
        **tool_env(),
        "PULUMI_HOME": str(home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_CONFIG_PASSPHRASE": "test-only-passphrase",
    }
