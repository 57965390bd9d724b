"""Fixtures for the stack tests: the committed stack configs, the Docker engine, throwaway stacks."""

from __future__ import annotations

import ipaddress
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.config import ENVIRONMENTS  # noqa: F401 - re-exported to this area
from tests.net import free_port  # noqa: F401 - re-exported to this area

ROOT = Path(__file__).resolve().parents[2]


def committed_config(env: str) -> dict[str, Any]:
    """The `config:` section of Pulumi.<env>.yaml, keys with the namespace."""
    return dict(yaml.safe_load((ROOT / f"Pulumi.{env}.yaml").read_text())["config"])


def raw_config(env: str) -> dict[str, Any]:
    """The same, keys without the `scalemart:` namespace (what stack.config.validate takes)."""
    return {k.split(":", 1)[1]: v for k, v in committed_config(env).items()}


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine answers ({exc}): run `make bootstrap` (it starts dockerd)")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    proc = subprocess.run(
        ["python3", "-c", "from toolchain import image; print(image.tag())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    ref = proc.stdout.strip()
    try:
        docker_client.images.get(ref)
    except Exception:  # noqa: BLE001 - any lookup failure means the same fix
        pytest.fail(f"base image {ref} is missing: run `make bootstrap`")
    return ref


def free_subnet(docker_client: Any) -> str:
    """A /24 in 172.28.200-249.0/24 that no Docker network and no committed environment uses."""
    taken = [
        ipaddress.ip_network(c["Subnet"])
        for n in docker_client.networks.list()
        for c in (n.attrs.get("IPAM") or {}).get("Config") or []
        if "." in c.get("Subnet", "")
    ]
    taken += [ipaddress.ip_network(raw_config(env)["subnet"]) for env in ENVIRONMENTS]
    start = 200 + uuid.uuid4().int % 50
    for i in range(50):
        candidate = ipaddress.ip_network(f"172.28.{200 + (start + i) % 50}.0/24")
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    pytest.fail("no free /24 in 172.28.200.0-172.28.249.0: remove stale test networks (`docker network prune`)")


class ThrowawayStack:
    """A stack of its own (name, prefix, subnet, ports, state folder) that cannot touch dev/staging/prod."""

    def __init__(self, tmp: Path, docker_client: Any, image: str, apps: int = 1) -> None:
        from stack import cli

        tag = uuid.uuid4().hex[:6]
        self.name = f"itest-{tag}"
        self.prefix = f"smit-{tag}"
        self.paths = cli.Paths(state=tmp / "state", build=tmp / "build")
        self.docker = docker_client
        self.config: dict[str, Any] = {
            "scalemart:environment": "dev",
            "scalemart:namePrefix": self.prefix,
            "scalemart:image": image,
            "scalemart:subnet": free_subnet(docker_client),
            "scalemart:hosts": {
                "app": {"count": apps, "memory": "192m"},
                "worker": {"count": 1, "memory": "128m"},
                "data": {"count": 1, "memory": "192m"},
                "monitoring": {"count": 1, "memory": "192m"},
                "lb": {"count": 1, "memory": "128m"},
            },
            "scalemart:publish": {"lb": f"127.0.0.1:{free_port()}", "perses": f"127.0.0.1:{free_port()}"},
        }
        self.cli = cli

    def up(self) -> Any:
        return self.cli.up(self.name, self.paths, self.config, quiet=True)

    def down(self, purge: bool = True) -> Any:
        return self.cli.down(self.name, purge, self.paths, self.config, quiet=True)

    def stack(self) -> Any:
        return self.cli.open_stack(self.name, self.config, self.paths)

    def containers(self) -> list[Any]:
        return self.docker.containers.list(all=True, filters={"label": f"scalemart.stack={self.name}"})

    def networks(self) -> list[Any]:
        return self.docker.networks.list(filters={"label": f"scalemart.stack={self.name}"})

    def volumes(self) -> list[Any]:
        return self.docker.volumes.list(filters={"label": f"scalemart.stack={self.name}"})

    def leftovers(self) -> list[str]:
        return (
            [f"container {c.name}" for c in self.containers()]
            + [f"network {n.name}" for n in self.networks()]
            + [f"volume {v.name}" for v in self.volumes()]
        )

    def force_cleanup(self) -> None:
        """Last resort after a failed test: remove by label what the test may have left."""
        for c in self.containers():
            c.remove(force=True)
        for n in self.networks():
            n.remove()
        for v in self.volumes():
            v.remove(force=True)


@pytest.fixture
def throwaway(tmp_path: Path, docker_client: Any, base_image: str) -> Iterator[ThrowawayStack]:
    for tool in (ROOT / ".tools" / "bin" / "pulumi", ROOT / ".tools" / "bin" / "pulumi-language-python"):
        if not tool.exists():
            pytest.fail(f"{tool} is missing: run `make bootstrap`")
    stack = ThrowawayStack(tmp_path, docker_client, base_image)
    try:
        yield stack
    finally:
        if stack.leftovers():
            try:
                stack.down(purge=True)
            finally:
                stack.force_cleanup()
