"""Shared helpers for the role tests: paths, the toolchain environment, output clean-up."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from toolchain import common
from toolchain.common import ROOT, VENV_BIN

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tool_env() -> dict[str, str]:
    return {
        **common.tool_env(),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
    }


def plain(text: str) -> str:
    return ANSI.sub("", text)


def tail(text: str, lines: int = 150) -> str:
    return "\n".join(plain(text).splitlines()[-lines:])


@pytest.fixture(scope="session")
def venv_tool():
    def find(name: str) -> str:
        path = VENV_BIN / name
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make bootstrap` (it builds the venv from pyproject.toml)")
        return str(path)

    return find


@pytest.fixture(scope="session")
def base_image() -> str:
    ref = os.environ.get("SCALEMART_BASE_IMAGE", "scalemart-base:latest")
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run `make bootstrap` (it starts dockerd)")
    if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0:
        pytest.fail(f"base image {ref} is missing: run `make bootstrap`")
    return ref


@pytest.fixture(scope="session")
def artifacts(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build phase for the whole role suite (ops/build.py), outside the repository."""
    from ops import build

    root = tmp_path_factory.mktemp("artifacts")
    try:
        build.build("molecule", base_image, root=root)
    except build.BuildError as exc:
        pytest.fail(f"the build phase failed: {exc}")
    return root


@pytest.fixture(scope="session")
def roles_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """roles/ copied away from the repository: a role that reached into it would not find it."""
    dest = tmp_path_factory.mktemp("roles-alone") / "roles"
    shutil.copytree(ROOT / "roles", dest)
    return dest
