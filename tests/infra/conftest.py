"""The verify suite: testinfra against the generated inventory of one environment.

    pytest tests/infra --scalemart-env=dev        (what `make verify ENV=dev` runs)

Hosts are reached through the Docker engine (the inventory's `ansible_host` is the container).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import testinfra

from ops import secrets
from ops.inventory import Inventory
from toolchain.common import BUILD

ROOT = Path(__file__).resolve().parents[2]

# Which services run on which group, and where they listen: (unit, port, bind) where port names an
# entry of the inventory's `scalemart_ports` (the stack config's) and bind is "private" (the host's
# private address), "loopback", or "published" (a port the environment publishes, which may listen
# on every interface of its host). One table for every infra test.
SERVICES: dict[str, list[tuple[str, str | None, str]]] = {
    "all": [("prometheus-node-exporter", "node_exporter", "private"), ("scalemart-host-limits.timer", None, "")],
    "app": [("scalemart-app", "app", "private")],
    "worker": [("scalemart-worker", "worker_metrics", "private")],
    "data": [
        ("redis-server", "redis", "private"),
        ("ferretdb", "mongodb", "private"),
        ("prometheus-redis-exporter", "redis_exporter", "private"),
        ("prometheus-mongodb-exporter", "mongodb_exporter", "private"),
        ("scalemart-backup.timer", None, ""),
    ],
    "monitoring": [
        ("prometheus", "prometheus", "private"),
        ("prometheus-alertmanager", "alertmanager", "private"),
        ("perses", "perses", "private"),
        ("prometheus-blackbox-exporter", "blackbox_exporter", "private"),
    ],
    "lb": [
        ("nginx", "lb", "published"),
        ("prometheus-nginx-exporter", "nginx_exporter", "private"),
        ("mtail", "mtail", "private"),
    ],
}


class Environment:
    def __init__(self, name: str) -> None:
        self.name = name
        build = BUILD / name
        inventory = build / "inventory.yml"
        if not inventory.exists():
            pytest.fail(f"{inventory} is missing: run `make up ENV={name}` first")
        self.inventory = Inventory.load(inventory)
        outputs = build / "outputs.json"
        self.outputs: dict[str, Any] = json.loads(outputs.read_text()) if outputs.exists() else {}

    def group(self, name: str) -> list[str]:
        return self.inventory.group(name)

    def hostvars(self, host: str) -> dict[str, Any]:
        return self.inventory.hostvars(host)

    def port(self, service: str) -> int:
        """The service's port from the inventory (the stack config's `scalemart:ports`)."""
        ports = self.inventory.vars.get("scalemart_ports") or {}
        if service not in ports:
            pytest.fail(f"the inventory's scalemart_ports has no {service!r}: {sorted(ports)}")
        return int(ports[service])

    def url_of(self, group: str, service: str) -> str:
        """http://<first host of group>:<service port>, on the private network."""
        hosts = self.group(group)
        assert hosts, f"no {group} host in the inventory"
        return f"http://{self.hostvars(hosts[0])['private_address']}:{self.port(service)}"

    def auth(self, service: str) -> httpx.BasicAuth:
        """The credential Prometheus's or Alertmanager's web config asks for (the vault's password)."""
        return httpx.BasicAuth(*secrets.web_credential(self.name, service))

    def host(self, name: str) -> Any:
        return testinfra.get_host(f"docker://{self.hostvars(name).get('ansible_host', name)}")

    def url(self, name: str) -> str:
        urls = self.outputs.get("urls", {})
        if name not in urls:
            pytest.fail(f"the stack outputs have no {name!r} URL: {sorted(urls)}")
        return str(urls[name]).rstrip("/")


@pytest.fixture(scope="session")
def environment(request: pytest.FixtureRequest) -> Environment:
    return Environment(request.config.getoption("--scalemart-env"))


def service_cases(env_name: str) -> list[tuple[str, str, int | None, str]]:
    env = Environment(env_name)
    cases = []
    for group, services in SERVICES.items():
        for host in env.group(group):
            for unit, port, bind in services:
                cases.append((host, unit, env.port(port) if port else None, bind))
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "service_case" in metafunc.fixturenames:
        cases = service_cases(metafunc.config.getoption("--scalemart-env"))
        metafunc.parametrize("service_case", cases, ids=[f"{h}:{u}" for h, u, _, _ in cases])
    if "host_name" in metafunc.fixturenames:
        env = Environment(metafunc.config.getoption("--scalemart-env"))
        hosts = env.group("all")
        metafunc.parametrize("host_name", hosts)
