"""Stack config for one environment: read once, validated completely, before any resource exists.

The raw config is the `scalemart:*` section of `Pulumi.<env>.yaml`. Replica counts, subnets,
published ports and memory limits have no defaults here: they come from that file only. What
does have a default is what is the same everywhere (service ports, address blocks, data dirs).
Every error names the config key and how to fix it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "scalemart"
ENVIRONMENTS = ("dev", "staging", "production")
ROLES = ("app", "worker", "data", "monitoring", "lb")
# Roles whose data lives in volumes mounted into one host: more than one would split the data.
SINGLE_HOST_ROLES = ("data", "monitoring")
# Replica floors per environment; production must survive losing hosts during a flash sale.
MIN_COUNTS = {"production": {"app": 3, "worker": 4}}

# Service ports: the cross-team contract. An environment may override one in `scalemart:ports`.
DEFAULT_PORTS = {
    "app": 8000, "worker_metrics": 9101, "lb": 80, "lb_status": 8081, "perses": 8080,
    "prometheus": 9090, "alertmanager": 9093, "redis": 6379, "mongodb": 27017,
    "node_exporter": 9100, "redis_exporter": 9121, "mongodb_exporter": 9216, "nginx_exporter": 9113,
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
PUBLISHABLE = {"lb": ("lb", "lb"), "perses": ("monitoring", "perses"),
               "prometheus": ("monitoring", "prometheus"), "alertmanager": ("monitoring", "alertmanager")}
REQUIRED_PUBLISHED = ("lb", "perses")
APP_KEYS = ("sentryTracesSampleRate", "logLevel", "rateLimitRequests")
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
    name: str            # inventory name and hostname, e.g. app-1
    container: str       # Docker container name, e.g. sm-dev-app-1
    address: str
    memory: str          # Docker memory limit, e.g. 512m
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
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def network_name(self) -> str:
        return f"{self.name_prefix}-net"

    def volume_name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"

    def count(self, role: str) -> int:
        return sum(1 for h in self.hosts if h.role == role)


def _get(raw: Mapping[str, Any], key: str, fix: str) -> Any:
    if key not in raw or raw[key] is None:
        raise ConfigError(key, "is missing", fix)
    return raw[key]


def _int(value: Any, key: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(key, f"{value!r} is not an integer", fix)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(key, f"{value!r} is not an integer", fix) from None


def _memory(value: Any, key: str) -> str:
    fix = "write a Docker memory size such as 256m or 1g (at least 64m)"
    text = str(value).strip().lower()
    match = MEMORY_RE.match(text)
    if not match:
        raise ConfigError(key, f"{value!r} is not a memory size", fix)
    number, unit = int(match.group(1)), match.group(2)
    if number * {"k": 1 / 1024, "m": 1, "g": 1024}[unit] < 64:
        raise ConfigError(key, f"{value!r} is below 64m; systemd and the service would not start", fix)
    return text


def parse_published(value: Any, key: str) -> tuple[str, int]:
    """`8080` or `127.0.0.1:8080` -> (bind address, port). A bare port binds loopback only."""
    fix = "write HOST_PORT or BIND_ADDRESS:HOST_PORT, e.g. 127.0.0.1:8080 (port 1-65535)"
    text = str(value).strip()
    host_ip, _, port_text = text.rpartition(":")
    host_ip = host_ip or "127.0.0.1"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(key, f"{value!r} is not a valid port", fix)
    try:
        ip = ipaddress.ip_address(host_ip)
    except ValueError:
        raise ConfigError(key, f"{host_ip!r} is not an IP address", fix) from None
    if ip.version != 4:
        raise ConfigError(key, f"{host_ip!r} is not an IPv4 address", fix)
    return host_ip, int(port_text)


def _subnet(value: Any, key: str) -> ipaddress.IPv4Network:
    fix = "write a private IPv4 CIDR such as 172.28.10.0/24 that no other environment or Docker network uses"
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise ConfigError(key, f"{value!r} is not a network ({exc})", fix) from None
    if not isinstance(net, ipaddress.IPv4Network) or not net.is_private:
        raise ConfigError(key, f"{value!r} is not a private IPv4 network", fix)
    if net.prefixlen > 24:
        raise ConfigError(key, f"{value!r} is smaller than a /24; the address blocks need .10-.199", fix)
    return net


def check_subnet_overlaps(key: str, subnet: str, others: Iterable[tuple[str, str]]) -> None:
    """Fail when `subnet` overlaps one of `others` ((owner description, CIDR) pairs)."""
    mine = ipaddress.ip_network(subnet)
    for owner, cidr in others:
        try:
            theirs = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if theirs.version == mine.version and mine.overlaps(theirs):
            raise ConfigError(key, f"{subnet} overlaps {cidr} of {owner}",
                              "pick a free /24 (e.g. another 172.28.x.0/24) in Pulumi.<env>.yaml")


def validate(stack: str, raw: Mapping[str, Any], image: str,
             other_subnets: Iterable[tuple[str, str]] = ()) -> StackConfig:
    """Validate the raw `scalemart:*` config (keys without the namespace) of stack `stack`.

    `other_subnets` are (owner, CIDR) pairs this environment's subnet must not overlap: the other
    environments' config files and the Docker engine's existing networks.
    """
    known = {"environment", "namePrefix", "image", "subnet", "hosts", "publish", "ports", "app"}
    for key in raw:
        if key not in known:
            raise ConfigError(key, "is not a known key", f"remove it; known keys: {', '.join(sorted(known))}")

    environment = str(raw.get("environment") or stack)
    if environment not in ENVIRONMENTS:
        raise ConfigError("environment", f"{environment!r} is not a known environment",
                          f"set `pulumi config set {NAMESPACE}:environment` to one of {', '.join(ENVIRONMENTS)}")

    prefix = str(raw.get("namePrefix") or f"sm-{environment}")
    if not NAME_RE.match(prefix) or len(prefix) > 24:
        raise ConfigError("namePrefix", f"{prefix!r} is not a valid name prefix",
                          "use 2-24 lowercase letters, digits and dashes, starting with a letter")

    image = str(raw.get("image") or image)
    if not IMAGE_RE.match(image):
        raise ConfigError("image", f"{image!r} is not an image reference",
                          "name a local image such as scalemart-base:<tag> (see `make bootstrap`)")

    net = _subnet(_get(raw, "subnet", "set scalemart:subnet to a private /24, e.g. 172.28.10.0/24"), "subnet")
    check_subnet_overlaps("subnet", str(net), other_subnets)

    hosts_raw = _get(raw, "hosts", f"set scalemart:hosts with an entry for each of {', '.join(ROLES)}")
    if not isinstance(hosts_raw, Mapping):
        raise ConfigError("hosts", "is not a mapping", "write role: {count: N, memory: 256m} entries")
    for role in hosts_raw:
        if role not in ROLES:
            raise ConfigError(f"hosts.{role}", "is not a known role", f"use one of {', '.join(ROLES)}")
    hosts: list[HostSpec] = []
    for role in ROLES:
        key = f"hosts.{role}"
        entry = hosts_raw.get(role)
        if entry is None:
            raise ConfigError(key, "is missing", f"add {role}: {{count: 1, memory: 256m}} under scalemart:hosts")
        if not isinstance(entry, Mapping):
            raise ConfigError(key, "is not a mapping", "write {count: N, memory: 256m}")
        for sub in entry:
            if sub not in ("count", "memory"):
                raise ConfigError(f"{key}.{sub}", "is not a known key", "use count and memory only")
        count = _int(_get(entry, "count", f"set {key}.count to 1 or more"), f"{key}.count",
                     "write a whole number of hosts, 1 or more")
        floor = MIN_COUNTS.get(environment, {}).get(role, 1)
        if count < floor:
            raise ConfigError(f"{key}.count", f"is {count}, below the minimum {floor} for {environment}",
                              f"set {key}.count to {floor} or more")
        first, size = ADDRESS_BLOCKS[role]
        if role in SINGLE_HOST_ROLES and count != 1:
            raise ConfigError(f"{key}.count", f"is {count}; the {role} volumes mount into exactly one host",
                              f"set {key}.count to 1")
        if count > size:
            raise ConfigError(f"{key}.count", f"is {count}, more than the {size} addresses reserved for {role}",
                              f"set {key}.count to {size} or fewer")
        memory = _memory(_get(entry, "memory", f"set {key}.memory, e.g. 256m"), f"{key}.memory")
        for i in range(1, count + 1):
            address = str(net.network_address + first + i - 1)
            hosts.append(HostSpec(role=role, index=i, name=f"{role}-{i}", container=f"{prefix}-{role}-{i}",
                                  address=address, memory=memory, groups=(role,)))

    ports = dict(DEFAULT_PORTS)
    ports_raw = raw.get("ports") or {}
    if not isinstance(ports_raw, Mapping):
        raise ConfigError("ports", "is not a mapping", "write service: port entries, e.g. app: 8000")
    for name, value in ports_raw.items():
        if name not in DEFAULT_PORTS:
            raise ConfigError(f"ports.{name}", "is not a known service", f"use one of {', '.join(DEFAULT_PORTS)}")
        port = _int(value, f"ports.{name}", "write a port number 1-65535")
        if not 1 <= port <= 65535:
            raise ConfigError(f"ports.{name}", f"{port} is not a valid port", "write a port number 1-65535")
        ports[name] = port

    publish_raw = _get(raw, "publish", "set scalemart:publish with lb and perses, e.g. lb: 127.0.0.1:8080")
    if not isinstance(publish_raw, Mapping):
        raise ConfigError("publish", "is not a mapping", "write service: BIND:PORT entries, e.g. lb: 127.0.0.1:8080")
    published: list[Published] = []
    seen: dict[tuple[str, int], str] = {}
    for service, value in publish_raw.items():
        key = f"publish.{service}"
        if service not in PUBLISHABLE:
            raise ConfigError(key, "cannot be published", f"publish only {', '.join(PUBLISHABLE)}")
        if value is None:
            continue
        host_ip, host_port = parse_published(value, key)
        for (other_ip, other_port), other in seen.items():
            if other_port == host_port and (other_ip == host_ip or "0.0.0.0" in (host_ip, other_ip)):  # noqa: S104
                raise ConfigError(key, f"port {host_port} is already published for {other}",
                                  "give each published service its own host port")
        seen[(host_ip, host_port)] = service
        role, port_name = PUBLISHABLE[service]
        published.append(Published(service, host_ip, host_port, role, ports[port_name]))
    for service in REQUIRED_PUBLISHED:
        if not any(p.service == service for p in published):
            raise ConfigError(f"publish.{service}", "is missing",
                              f"set scalemart:publish.{service} to a loopback port, e.g. 127.0.0.1:PORT")

    app_raw = raw.get("app") or {}
    if not isinstance(app_raw, Mapping):
        raise ConfigError("app", "is not a mapping", "write sentryTracesSampleRate and logLevel entries")
    for key in app_raw:
        if key not in APP_KEYS:
            raise ConfigError(f"app.{key}", "is not a known key", f"use {', '.join(APP_KEYS)}")
    rate_raw = app_raw.get("sentryTracesSampleRate", 0.0)
    try:
        rate = float(rate_raw)
    except (TypeError, ValueError):
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("app.sentryTracesSampleRate", f"{rate_raw!r} is not between 0 and 1",
                          "write a fraction such as 0.5")
    level = str(app_raw.get("logLevel", "info")).lower()
    if level not in LOG_LEVELS:
        raise ConfigError("app.logLevel", f"{level!r} is not a log level", f"use one of {', '.join(LOG_LEVELS)}")
    limit = app_raw.get("rateLimitRequests", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError("app.rateLimitRequests", f"{limit!r} is not a whole number of 0 or more",
                          "write requests per client per 10 s window, e.g. 100 (0 turns the limiter off)")

    return StackConfig(
        environment=environment, stack=stack, name_prefix=prefix, image=image, subnet=str(net),
        gateway=str(net.network_address + 1), hosts=tuple(hosts), published=tuple(published), ports=ports,
        app_settings={"sentry_traces_sample_rate": rate, "log_level": level, "rate_limit_requests": limit},
        labels={"scalemart.env": environment, "scalemart.stack": stack, "scalemart.prefix": prefix},
    )
