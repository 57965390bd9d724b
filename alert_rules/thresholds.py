"""Load and validate `alert_rules/thresholds.yml`, the one source of alert, dashboard and gate numbers.

    from alert_rules import thresholds
    t = thresholds.load()                 # or load("/path/to/thresholds.yml")
    t.api.error_ratio.critical            # 0.05
    t["api.latency_p95_seconds"].for_     # "5m"

Every key the rules and dashboards use is declared in SCHEMA below, so a typo, a missing key, a
negative number or an inverted tier pair (warning >= critical, or <= for low-is-bad keys) raises
ThresholdsError naming the key, before anything is generated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).with_name("thresholds.yml")
TIERS = ("info", "warning", "critical")
SEVERITIES = TIERS
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class ThresholdsError(ValueError):
    """A thresholds file problem; the message starts with the offending key."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem} (fix: {fix})")


@dataclass(frozen=True)
class Spec:
    """What a key must look like. `low_is_bad` flips the tier order (critical is the lower value)."""

    tiers: tuple[str, ...] = ()
    low_is_bad: bool = False
    ratio: bool = False
    integer: bool = False
    gate: bool = False  # a load-test pass/fail limit: one `limit` value, no `for`

    @property
    def is_state(self) -> bool:
        return not self.tiers and not self.gate


SCHEMA: dict[str, Spec] = {
    "api.error_ratio": Spec(("warning", "critical"), ratio=True),
    "api.latency_p95_seconds": Spec(("warning",)),
    "api.response_time_p99_seconds": Spec(("warning", "critical")),
    "api.concurrent_users": Spec(("warning", "critical"), integer=True),
    "hosts.cpu_ratio": Spec(("warning", "critical"), ratio=True),
    "hosts.memory_ratio": Spec(("warning", "critical"), ratio=True),
    "hosts.target_down": Spec(),
    "datastores.redis_down": Spec(),
    "datastores.mongodb_down": Spec(),
    "datastores.database_connections": Spec(("warning", "critical"), integer=True),
    "datastores.cache_hit_ratio": Spec(("warning", "critical"), low_is_bad=True, ratio=True),
    "worker.queue_length": Spec(("warning",), integer=True),
    "worker.heartbeat_age_seconds": Spec(("critical",)),
    "business.stock_left": Spec(("info",), low_is_bad=True, integer=True),
    "backups.last_success_age_hours": Spec(("warning",)),
    "monitoring.rule_evaluation_failures": Spec(),
    "monitoring.config_reload_failed": Spec(),
    "monitoring.notification_failures": Spec(),
    "security.login_failures_per_minute": Spec(("warning",)),
    "security.rate_limited_per_minute": Spec(("info",)),
    "loadtest.p95_ms": Spec(gate=True),
    "loadtest.error_ratio": Spec(gate=True, ratio=True),
    "loadtest.oversell_units": Spec(gate=True, integer=True),
    "loadtest.generator_cpu_ratio": Spec(gate=True, ratio=True),
}


def duration_seconds(text: str) -> float:
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class Threshold:
    key: str
    for_: str
    values: dict[str, float] = field(default_factory=dict)
    severity: str | None = None
    low_is_bad: bool = False
    ratio: bool = False
    integer: bool = False

    def __getattr__(self, name: str) -> float:
        # tiers read as attributes: t.api.error_ratio.warning
        if name in TIERS:
            values = object.__getattribute__(self, "values")
            if name in values:
                return values[name]
            raise AttributeError(f"{object.__getattribute__(self, 'key')} has no {name} tier")
        raise AttributeError(name)

    @property
    def for_seconds(self) -> float:
        return duration_seconds(self.for_)

    def tiers(self) -> list[tuple[str, float]]:
        """(severity, value) from the mildest tier to the most severe."""
        return [(t, self.values[t]) for t in TIERS if t in self.values]


class Thresholds:
    def __init__(self, items: dict[str, Threshold], path: Path) -> None:
        self._items = items
        self.path = path
        sections: dict[str, dict[str, Threshold]] = {}
        for key, item in items.items():
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = item
        for section, names in sections.items():
            setattr(self, section, SimpleNamespace(**names))

    def __getattr__(self, name: str) -> Any:
        # sections are set as attributes in __init__; this only runs for a name that is not one
        raise AttributeError(f"no thresholds section {name!r}; sections: "
                             f"{', '.join(sorted({k.split('.')[0] for k in SCHEMA}))}")

    def __getitem__(self, key: str) -> Threshold:
        return self._items[key]

    def __iter__(self):
        return iter(self._items.values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, item in self._items.items():
            entry: dict[str, Any] = dict(item.values)
            if item.severity:
                entry["severity"] = item.severity
            entry["for"] = item.for_
            out[key] = entry
        return out


def _number(key: str, value: Any, spec: Spec) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ThresholdsError(key, f"must be a number, got {value!r}", "write a plain number such as 0.05 or 200")
    if value < 0:
        raise ThresholdsError(key, f"must not be negative, got {value}", "use a value of 0 or more")
    if spec.ratio and value > 1:
        raise ThresholdsError(key, f"is a ratio and must be at most 1, got {value}", "write 5 % as 0.05")
    if spec.integer and float(value) != int(value):
        raise ThresholdsError(key, f"counts whole units, got {value}", "use a whole number")
    return float(value)


def validate(data: Any, path: Path | str = "<thresholds>") -> Thresholds:
    if not isinstance(data, dict):
        raise ThresholdsError("<file>", f"{path} must hold a mapping of sections", "see alert_rules/thresholds.yml")
    seen: set[str] = set()
    items: dict[str, Threshold] = {}
    for section, entries in data.items():
        if not isinstance(entries, dict):
            raise ThresholdsError(str(section), "must be a mapping of keys", "indent the keys under the section")
        for name in entries:
            key = f"{section}.{name}"
            if key not in SCHEMA:
                raise ThresholdsError(key, "is not a known threshold", f"use one of: {', '.join(sorted(SCHEMA))}")
            seen.add(key)
    for key, spec in SCHEMA.items():
        section, name = key.split(".", 1)
        if key not in seen:
            raise ThresholdsError(key, "is missing", f"add `{name}:` under `{section}:` in {path}")
        entry = data[section][name]
        if not isinstance(entry, dict):
            raise ThresholdsError(key, f"must be a mapping, got {entry!r}", "write {warning: N, critical: N, for: 5m}")
        if spec.gate:
            for extra in sorted(set(entry) - {"limit"}):
                raise ThresholdsError(f"{key}.{extra}", "is not used for a load-test gate", "write {limit: N}")
            if entry.get("limit") is None:
                raise ThresholdsError(f"{key}.limit", "is missing", f"add `limit: <number>` to {key}")
            items[key] = Threshold(key, "0s", {"limit": _number(f"{key}.limit", entry["limit"], spec)}, None,
                                   spec.low_is_bad, spec.ratio, spec.integer)
            continue
        for_ = entry.get("for")
        if not isinstance(for_, str) or not _DURATION.match(for_):
            raise ThresholdsError(f"{key}.for", f"must be a Prometheus duration, got {for_!r}", "write e.g. 5m or 1h")
        allowed = set(spec.tiers) | {"for"} | ({"severity"} if spec.is_state else set())
        for extra in sorted(set(entry) - allowed):
            raise ThresholdsError(f"{key}.{extra}", "is not used for this key",
                                  f"allowed: {', '.join(sorted(allowed))}")
        if spec.is_state:
            severity = entry.get("severity")
            if severity not in SEVERITIES:
                raise ThresholdsError(f"{key}.severity", f"must be one of {', '.join(SEVERITIES)}, got {severity!r}",
                                      "set severity: critical, warning or info")
            items[key] = Threshold(key, for_, {}, severity)
            continue
        values: dict[str, float] = {}
        for tier in spec.tiers:
            if tier not in entry or entry[tier] is None:
                raise ThresholdsError(f"{key}.{tier}", "is missing", f"add `{tier}: <number>` to {key}")
            values[tier] = _number(f"{key}.{tier}", entry[tier], spec)
        ordered = [t for t in TIERS if t in values]
        for milder, harsher in zip(ordered, ordered[1:], strict=False):
            a, b = values[milder], values[harsher]
            inverted = a <= b if spec.low_is_bad else a >= b
            if inverted:
                relation = "above" if spec.low_is_bad else "below"
                raise ThresholdsError(key, f"{milder} ({a:g}) must be {relation} {harsher} ({b:g})",
                                      f"swap or correct the two values of {key}")
        items[key] = Threshold(key, for_, values, None, spec.low_is_bad, spec.ratio, spec.integer)
    return Thresholds(items, Path(path))


def load(path: str | Path | None = None) -> Thresholds:
    """Read and validate a thresholds file (default: the one beside this module)."""
    file = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdsError("<file>", f"cannot read {file}: {exc.strerror}",
                              "pass the path of thresholds.yml") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ThresholdsError("<file>", f"{file} is not valid YAML: {exc}", "fix the YAML syntax") from exc
    return validate(data, file)
