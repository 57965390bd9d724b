"""The pydantic models of the `scalemart:*` stack config (used by stack.config.validate only).

Each field has a validator with its own words; a refusal is an `_Invalid` (problem, fix), turned into
the ConfigError the callers print by `config_error`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stack.config import (
    ADDRESS_BLOCKS,
    APP_KEYS,
    DEFAULT_PORTS,
    ENVIRONMENTS,
    IMAGE_RE,
    LB_KEYS,
    LOG_LEVELS,
    MEMORY_RE,
    MIN_COUNTS,
    NAME_RE,
    NAMESPACE,
    PUBLISHABLE,
    REQUIRED_PUBLISHED,
    ROLES,
    SINGLE_HOST_ROLES,
    ConfigError,
    check_subnet_overlaps,
)


class _Invalid(ValueError):
    """Raised inside a validator with the problem and fix ConfigError prints. `under` names the key below
    pydantic's location (a validator of `hosts` that refuses `hosts.app.count`); `{key}` in the fix
    becomes the full key."""

    def __init__(self, problem: str, fix: str, *under: str) -> None:
        super().__init__(problem)
        self.problem, self.fix, self.under = problem, fix, under


def config_error(exc: ValidationError) -> ConfigError:
    """The first problem pydantic found, as the ConfigError the callers print."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    key = ".".join(str(part) for part in (*first["loc"], *getattr(cause, "under", ())))
    if isinstance(cause, _Invalid):
        return ConfigError(key, cause.problem, cause.fix.replace("{key}", key))
    # Every field has a validator with its own words; this is pydantic's, should one ever get through.
    return ConfigError(key, first["msg"], "compare with Pulumi.dev.yaml")


def _mapping(
    value: Any, known: Iterable[str], not_mapping: str, unknown: tuple[str, str], null_is_absent: bool = True
) -> dict[str, Any]:
    """`value` as a dict; an unknown key is refused before anything else (it is usually a typo of a
    missing one). A null value (`key:` in YAML) counts as absent where `null_is_absent`."""
    if not isinstance(value, Mapping):
        raise _Invalid("is not a mapping", not_mapping)
    known = list(known)
    for key in value:
        if key not in known:
            raise _Invalid(unknown[0], unknown[1].replace("{known}", ", ".join(sorted(known))), str(key))
    return {k: v for k, v in value.items() if v is not None or not null_is_absent}


class _Section(BaseModel):
    """A mapping of known keys with its own words for a value that is not a mapping, an unknown key
    and a missing one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NOT_MAPPING: ClassVar[str]
    UNKNOWN: ClassVar[tuple[str, str]] = ("is not a known key", "remove it; known keys: {known}")
    MISSING: ClassVar[dict[str, str]] = {}
    NULL_IS_ABSENT: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> dict[str, Any]:
        data = _mapping(
            value,
            (f.alias or name for name, f in cls.model_fields.items()),
            cls.NOT_MAPPING,
            cls.UNKNOWN,
            cls.NULL_IS_ABSENT,
        )
        for key, fix in cls.MISSING.items():
            if key not in data:
                raise _Invalid("is missing", fix, key)
        return data


def _integer(fix: str) -> BeforeValidator:
    """An int, or a string of one (Pulumi hands scalars over as strings); never a bool or a float."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Invalid(f"{value!r} is not an integer", fix)
        try:
            return int(value)
        except ValueError:
            raise _Invalid(f"{value!r} is not an integer", fix) from None

    return BeforeValidator(check)


def _port_range(port: int) -> int:
    if not 1 <= port <= 65535:
        raise _Invalid(f"{port} is not a valid port", "write a port number 1-65535")
    return port


def _memory(value: Any) -> str:
    fix = "write a Docker memory size such as 256m or 1g (at least 64m)"
    text = str(value).strip().lower()
    match = MEMORY_RE.match(text)
    if not match:
        raise _Invalid(f"{value!r} is not a memory size", fix)
    number, unit = int(match.group(1)), match.group(2)
    if number * {"k": 1 / 1024, "m": 1, "g": 1024}[unit] < 64:
        raise _Invalid(f"{value!r} is below 64m; systemd and the service would not start", fix)
    return text


def _bind(value: Any) -> tuple[str, int]:
    fix = "write HOST_PORT or BIND_ADDRESS:HOST_PORT, e.g. 127.0.0.1:8080 (port 1-65535)"
    text = str(value).strip()
    host_ip, _, port_text = text.rpartition(":")
    host_ip = host_ip or "127.0.0.1"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise _Invalid(f"{value!r} is not a valid port", fix)
    try:
        ip = ipaddress.ip_address(host_ip)
    except ValueError:
        raise _Invalid(f"{host_ip!r} is not an IP address", fix) from None
    if ip.version != 4:
        raise _Invalid(f"{host_ip!r} is not an IPv4 address", fix)
    return host_ip, int(port_text)


def _fraction(value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise _Invalid(f"{value!r} is not between 0 and 1", "write a fraction such as 0.5")
    return rate


def _log_level(value: Any) -> str:
    level = str(value).lower()
    if level not in LOG_LEVELS:
        raise _Invalid(f"{level!r} is not a log level", f"use one of {', '.join(LOG_LEVELS)}")
    return level


def _rate_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(
            f"{value!r} is not a whole number of 0 or more",
            "write requests per client per 10 s window, e.g. 100 (0 turns the limiter off)",
        )
    return value


HostCount = Annotated[int, _integer("write a whole number of hosts, 1 or more")]
Memory = Annotated[str, BeforeValidator(_memory)]
Port = Annotated[int, _integer("write a port number 1-65535"), AfterValidator(_port_range)]
Bind = Annotated[tuple[str, int], BeforeValidator(_bind)]
Fraction = Annotated[float, BeforeValidator(_fraction)]
LogLevel = Annotated[str, BeforeValidator(_log_level)]
RateLimit = Annotated[int, BeforeValidator(_rate_limit)]


def _whole(fix: str) -> BeforeValidator:
    """A whole number of 0 or more (the balancer's rate and burst, as rateLimitRequests)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _Invalid(f"{value!r} is not a whole number of 0 or more", fix)
        return value

    return BeforeValidator(check)


LbRate = Annotated[int, _whole("write requests per second per client address, e.g. 50 (0 turns the limit off)")]
LbBurst = Annotated[int, _whole("write the requests a client address may send at once above the rate, e.g. 200")]


class _HostEntry(_Section):
    """One entry of scalemart:hosts; it does not know its role, so its fixes say `{key}`."""

    NOT_MAPPING = "write {count: N, memory: 256m}"
    UNKNOWN = ("is not a known key", "use count and memory only")
    MISSING = {"count": "set {key} to 1 or more", "memory": "set {key}, e.g. 256m"}

    count: HostCount
    memory: Memory


class _App(_Section):
    NOT_MAPPING = "write sentryTracesSampleRate and logLevel entries"
    UNKNOWN = ("is not a known key", f"use {', '.join(APP_KEYS)}")
    NULL_IS_ABSENT = False

    sentry_traces_sample_rate: Fraction = Field(default=0.0, alias="sentryTracesSampleRate")
    log_level: LogLevel = Field(default="info", alias="logLevel")
    rate_limit_requests: RateLimit = Field(default=100, alias="rateLimitRequests")


class _Lb(_Section):
    """The load balancer's per-client limit (roles/loadbalancer: nginx limit_req)."""

    NOT_MAPPING = "write rateLimitPerSecond and rateLimitBurst entries"
    UNKNOWN = ("is not a known key", f"use {', '.join(LB_KEYS)}")
    NULL_IS_ABSENT = False

    rate_limit_per_second: LbRate = Field(default=50, alias="rateLimitPerSecond")
    rate_limit_burst: LbBurst = Field(default=200, alias="rateLimitBurst")


def _context(info: ValidationInfo, name: str) -> Any:
    return (info.context or {})[name]


class Stack(_Section):
    """The `scalemart:*` keys without the namespace. Fields are checked in this order, so a later
    field's validator can read an earlier one from `info.data` (the count floors need the environment)."""

    NOT_MAPPING = "write the scalemart:* keys of Pulumi.<env>.yaml"
    MISSING = {
        "subnet": "set scalemart:subnet to a private /24, e.g. 172.28.10.0/24",
        "hosts": f"set scalemart:hosts with an entry for each of {', '.join(ROLES)}",
        "publish": "set scalemart:publish with lb and perses, e.g. lb: 127.0.0.1:8080",
    }

    environment: str = Field("", validate_default=True)
    name_prefix: str = Field("", alias="namePrefix", validate_default=True)
    image: str = Field("", validate_default=True)
    subnet: ipaddress.IPv4Network
    hosts: dict[str, _HostEntry]
    ports: dict[str, Port] = Field(default_factory=lambda: dict(DEFAULT_PORTS))
    publish: dict[str, Bind]
    app: _App = _App()
    lb: _Lb = _Lb()

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any, info: ValidationInfo) -> str:
        environment = str(value or _context(info, "stack"))
        if environment not in ENVIRONMENTS:
            raise _Invalid(
                f"{environment!r} is not a known environment",
                f"set `pulumi config set {NAMESPACE}:environment` to one of {', '.join(ENVIRONMENTS)}",
            )
        return environment

    @field_validator("name_prefix", mode="before")
    @classmethod
    def _name_prefix(cls, value: Any, info: ValidationInfo) -> str:
        prefix = str(value or f"sm-{info.data.get('environment', '')}")
        if not NAME_RE.match(prefix) or len(prefix) > 24:
            raise _Invalid(
                f"{prefix!r} is not a valid name prefix",
                "use 2-24 lowercase letters, digits and dashes, starting with a letter",
            )
        return prefix

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, value: Any, info: ValidationInfo) -> str:
        image = str(value or _context(info, "image"))
        if not IMAGE_RE.match(image):
            raise _Invalid(
                f"{image!r} is not an image reference",
                "name a local image such as scalemart-base:<tag> (see `make bootstrap`)",
            )
        return image

    @field_validator("subnet", mode="before")
    @classmethod
    def _free_subnet(cls, value: Any, info: ValidationInfo) -> ipaddress.IPv4Network:
        fix = "write a private IPv4 CIDR such as 172.28.10.0/24 that no other environment or Docker network uses"
        try:
            net = ipaddress.ip_network(str(value), strict=True)
        except ValueError as exc:
            raise _Invalid(f"{value!r} is not a network ({exc})", fix) from None
        if not isinstance(net, ipaddress.IPv4Network) or not net.is_private:
            raise _Invalid(f"{value!r} is not a private IPv4 network", fix)
        if net.prefixlen > 24:
            raise _Invalid(f"{value!r} is smaller than a /24; the address blocks need .10-.199", fix)
        check_subnet_overlaps("subnet", str(net), _context(info, "other_subnets"))
        return net

    @field_validator("hosts", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> dict[str, Any]:
        hosts = _mapping(
            value,
            ROLES,
            "write role: {count: N, memory: 256m} entries",
            ("is not a known role", f"use one of {', '.join(ROLES)}"),
        )
        for role in ROLES:
            if role not in hosts:
                raise _Invalid("is missing", f"add {role}: {{count: 1, memory: 256m}} under scalemart:hosts", role)
        return {role: hosts[role] for role in ROLES}

    @field_validator("hosts")
    @classmethod
    def _counts(cls, hosts: dict[str, _HostEntry], info: ValidationInfo) -> dict[str, _HostEntry]:
        environment = info.data.get("environment", "")
        for role, entry in hosts.items():
            key, count = f"hosts.{role}", entry.count
            floor = MIN_COUNTS.get(environment, {}).get(role, 1)
            if count < floor:
                raise _Invalid(
                    f"is {count}, below the minimum {floor} for {environment}",
                    f"set {key}.count to {floor} or more",
                    role,
                    "count",
                )
            size = ADDRESS_BLOCKS[role][1]
            if role in SINGLE_HOST_ROLES and count != 1:
                raise _Invalid(
                    f"is {count}; the {role} volumes mount into exactly one host",
                    f"set {key}.count to 1",
                    role,
                    "count",
                )
            if count > size:
                raise _Invalid(
                    f"is {count}, more than the {size} addresses reserved for {role}",
                    f"set {key}.count to {size} or fewer",
                    role,
                    "count",
                )
        return hosts

    @field_validator("ports", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> dict[str, Any]:
        return {
            **DEFAULT_PORTS,
            **_mapping(
                value,
                DEFAULT_PORTS,
                "write service: port entries, e.g. app: 8000",
                ("is not a known service", f"use one of {', '.join(DEFAULT_PORTS)}"),
                null_is_absent=False,
            ),
        }

    @field_validator("publish", mode="before")
    @classmethod
    def _publishable(cls, value: Any) -> dict[str, Any]:
        return _mapping(
            value,
            PUBLISHABLE,
            "write service: BIND:PORT entries, e.g. lb: 127.0.0.1:8080",
            ("cannot be published", f"publish only {', '.join(PUBLISHABLE)}"),
        )

    @field_validator("publish")
    @classmethod
    def _one_port_each(cls, publish: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
        seen: dict[tuple[str, int], str] = {}
        for service, (host_ip, host_port) in publish.items():
            for (other_ip, other_port), other in seen.items():
                if other_port == host_port and (other_ip == host_ip or "0.0.0.0" in (host_ip, other_ip)):  # noqa: S104
                    raise _Invalid(
                        f"port {host_port} is already published for {other}",
                        "give each published service its own host port",
                        service,
                    )
            seen[(host_ip, host_port)] = service
        for service in REQUIRED_PUBLISHED:
            if service not in publish:
                raise _Invalid(
                    "is missing", f"set scalemart:publish.{service} to a loopback port, e.g. 127.0.0.1:PORT", service
                )
        return publish
