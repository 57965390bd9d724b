"""Stack config for one environment: read once, validated completely, before any resource exists.

The raw config is the `scalemart:*` section of `Pulumi.<env>.yaml`. Replica counts, subnets,
published ports and memory limits have no defaults here: they come from that file only. What
does have a default is what is the same everywhere (service ports, address blocks, data dirs).
The `scalemart:*` keys are checked by the pydantic models of stack/schema.py; every error names the
config key, the problem and how to fix it (ConfigError), and the models never leave `validate`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import (
    ValidationError,
)

NAMESPACE = "scalemart"
ENVIRONMENTS = ("dev", "staging", "production")
ROLES = ("app", "worker", "data", "monitoring", "lb")
# Roles whose data lives in volumes mounted into one host: more than one would split the data.
SINGLE_HOST_ROLES = ("data", "monitoring")
# Replica floors per environment; production must survive losing hosts during a flash sale.
MIN_COUNTS = {"production": {"app": 3, "worker": 4}}

# Service ports: the cross-team contract. An environment may override one in `scalemart:ports`.
DEFAULT_PORTS = {
    "app": 8000,
    "worker_metrics": 9101,
    "lb": 80,
    "lb_status": 8081,
    "perses": 8080,
    "prometheus": 9090,
    "alertmanager": 9093,
    "redis": 6379,
    "mongodb": 27017,
    "node_exporter": 9100,
    "redis_exporter": 9121,
    "mongodb_exporter": 9216,
    "nginx_exporter": 9113,
    # Prometheus probes through the blackbox exporter (monitoring); mtail reads nginx's access log (lb).
    "blackbox_exporter": 9115,
    "mtail": 3903,
    # FerretDB's own metrics (/debug/metrics), Alertmanager's gossip, the SMS notifier beside Alertmanager.
    "ferretdb_metrics": 8088,
    "alertmanager_cluster": 9094,
    "sms_notifier": 9095,
}
# Host-address blocks inside the subnet (offset of the first host, block size). A fixed block per
# role keeps every address stable when another role's replica count changes.
ADDRESS_BLOCKS = {"lb": (10, 10), "data": (20, 10), "monitoring": (30, 10), "app": (100, 50), "worker": (150, 50)}
# Data volumes: name suffix -> (role of the host that mounts it, mount point inside the host).
VOLUMES = {
    "mongodb": ("data", "/var/lib/ferretdb"),
    "redis": ("data", "/var/lib/redis"),
    "backups": ("data", "/var/backups/scalemart"),
    "prometheus": ("monitoring", "/var/lib/prometheus"),
    "perses": ("monitoring", "/var/lib/perses"),
}
# What may be published on the control machine, and which host serves it on which service port.
PUBLISHABLE = {
    "lb": ("lb", "lb"),
    "perses": ("monitoring", "perses"),
    "prometheus": ("monitoring", "prometheus"),
    "alertmanager": ("monitoring", "alertmanager"),
}
REQUIRED_PUBLISHED = ("lb", "perses")
APP_KEYS = ("sentryTracesSampleRate", "logLevel", "rateLimitRequests")
LB_KEYS = ("rateLimitPerSecond", "rateLimitBurst")
LOG_LEVELS = ("debug", "info", "warning", "error")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
MEMORY_RE = re.compile(r"^(\d+)([kmg])$")
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?(@sha256:[0-9a-f]{64})?$")


class ConfigError(ValueError):
    """A bad stack config value: names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key if key.startswith(f"{NAMESPACE}:") else f"{NAMESPACE}:{key}"
        self.fix = fix
        super().__init__(f"{self.key}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class Published:
    """A host port on the control machine forwarded to a service port of one host."""

    service: str
    host_ip: str
    host_port: int
    role: str
    container_port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host_ip == "0.0.0.0" else self.host_ip  # noqa: S104 - a URL, not a bind
        return f"http://{host}:{self.host_port}/"


@dataclass(frozen=True)
class HostSpec:
    role: str
    index: int
    name: str  # inventory name and hostname, e.g. app-1
    container: str  # Docker container name, e.g. sm-dev-app-1
    address: str
    memory: str  # Docker memory limit, e.g. 512m
    groups: tuple[str, ...]


@dataclass(frozen=True)
class StackConfig:
    environment: str
    stack: str
    name_prefix: str
    image: str
    subnet: str
    gateway: str
    hosts: tuple[HostSpec, ...]
    published: tuple[Published, ...]
    ports: Mapping[str, int]
    app_settings: Mapping[str, Any]
    lb_settings: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def network_name(self) -> str:
        return f"{self.name_prefix}-net"

    def volume_name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"

    def count(self, role: str) -> int:
        return sum(1 for h in self.hosts if h.role == role)


def check_subnet_overlaps(key: str, subnet: str, others: Iterable[tuple[str, str]]) -> None:
    """Fail when `subnet` overlaps one of `others` ((owner description, CIDR) pairs)."""
    mine = ipaddress.ip_network(subnet)
    for owner, cidr in others:
        try:
            theirs = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if theirs.version == mine.version and mine.overlaps(theirs):
            raise ConfigError(
                key,
                f"{subnet} overlaps {cidr} of {owner}",
                "pick a free /24 (e.g. another 172.28.x.0/24) in Pulumi.<env>.yaml",
            )


def validate(
    stack: str, raw: Mapping[str, Any], image: str, other_subnets: Iterable[tuple[str, str]] = ()
) -> StackConfig:
    """Validate the raw `scalemart:*` config (keys without the namespace) of stack `stack`.

    `other_subnets` are (owner, CIDR) pairs this environment's subnet must not overlap: the other
    environments' config files and the Docker engine's existing networks.
    """
    # Here, not at the top: the models read this module's facts and ConfigError.
    from stack.schema import Stack, config_error

    try:
        cfg = Stack.model_validate(raw, context={"stack": stack, "image": image, "other_subnets": list(other_subnets)})
    except ValidationError as exc:
        raise config_error(exc) from None
    net, prefix = cfg.subnet, cfg.name_prefix
    hosts = [
        HostSpec(
            role=role,
            index=i,
            name=f"{role}-{i}",
            container=f"{prefix}-{role}-{i}",
            address=str(net.network_address + ADDRESS_BLOCKS[role][0] + i - 1),
            memory=entry.memory,
            groups=(role,),
        )
        for role, entry in cfg.hosts.items()
        for i in range(1, entry.count + 1)
    ]
    published = [
        Published(service, host_ip, host_port, PUBLISHABLE[service][0], cfg.ports[PUBLISHABLE[service][1]])
        for service, (host_ip, host_port) in cfg.publish.items()
    ]
    return StackConfig(
        environment=cfg.environment,
        stack=stack,
        name_prefix=prefix,
        image=cfg.image,
        subnet=str(net),
        gateway=str(net.network_address + 1),
        hosts=tuple(hosts),
        published=tuple(published),
        ports=cfg.ports,
        app_settings=cfg.app.model_dump(),
        lb_settings=cfg.lb.model_dump(),
        labels={"scalemart.env": cfg.environment, "scalemart.stack": stack, "scalemart.prefix": prefix},
    )
