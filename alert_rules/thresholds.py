"""Load and validate `alert_rules/thresholds.yml`, the one source of alert, dashboard and gate numbers.

    from alert_rules import thresholds
    t = thresholds.load()                 # or load("/path/to/thresholds.yml")
    t.api.error_ratio.critical            # 0.05
    t["api.latency_p95_seconds"].for_     # "5m"

Every key the rules and dashboards use is declared in SCHEMA below, so a typo, a missing key, a
negative number or an inverted tier pair (warning >= critical, or <= for low-is-bad keys) raises
ThresholdsError naming the key, before anything is generated. The checks are pydantic models made
from SCHEMA, one per key; they stay inside this module, callers get Threshold and Thresholds.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

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
    "hosts.disk_used_ratio": Spec(("warning", "critical"), ratio=True),
    "hosts.disk_full_within_24h": Spec(),
    "hosts.probe_failed": Spec(),
    "datastores.redis_down": Spec(),
    "datastores.mongodb_down": Spec(),
    "datastores.database_connections": Spec(("warning", "critical"), integer=True),
    "datastores.cache_hit_ratio": Spec(("warning", "critical"), low_is_bad=True, ratio=True),
    "datastores.redis_memory_ratio": Spec(("warning", "critical"), ratio=True),
    "worker.queue_length": Spec(("warning",), integer=True),
    "worker.heartbeat_age_seconds": Spec(("critical",)),
    "business.stock_left": Spec(("info",), low_is_bad=True, integer=True),
    "business.sold_out": Spec(),
    "backups.last_success_age_hours": Spec(("warning",)),
    "monitoring.rule_evaluation_failures": Spec(),
    "monitoring.config_reload_failed": Spec(),
    "monitoring.notification_failures": Spec(),
    "monitoring.tsdb_retention_ratio": Spec(("warning", "critical"), ratio=True),
    "security.login_failures_per_minute": Spec(("warning",)),
    "security.rate_limited_per_minute": Spec(("info",)),
    "security.balancer_rate_limited_per_minute": Spec(("info",)),
    "security.token_failures_per_minute": Spec(("warning",)),
    "security.injection_attempts": Spec(),
    "security.oversized_bodies_per_minute": Spec(("info",)),
    "security.client_errors_per_minute": Spec(("warning",)),
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
    def __init__(self, items: dict[str, Threshold], path: Path, slos: Slos) -> None:
        self._items = items
        self.slos = slos  # the `slos:` section: objectives and burn-rate policy (alert_rules/slo.py)
        self.path = path
        sections: dict[str, dict[str, Threshold]] = {}
        for key, item in items.items():
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = item
        for section, names in sections.items():
            setattr(self, section, SimpleNamespace(**names))

    def __getattr__(self, name: str) -> Any:
        # sections are set as attributes in __init__; this only runs for a name that is not one
        raise AttributeError(
            f"no thresholds section {name!r}; sections: {', '.join(sorted({k.split('.')[0] for k in SCHEMA}))}"
        )

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


class _Invalid(ValueError):
    """Raised inside a validator with the problem and fix ThresholdsError prints; `under` names the key
    below pydantic's location (a file-level check that refuses `api.error_rate`)."""

    def __init__(self, problem: str, fix: str, *under: str) -> None:
        super().__init__(problem)
        self.problem, self.fix, self.under = problem, fix, under


def _duration(value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.match(value):
        raise _Invalid(f"must be a Prometheus duration, got {value!r}", "write e.g. 5m or 1h")
    return value


def _severity(value: Any) -> str:
    if value not in SEVERITIES:
        raise _Invalid(
            f"must be one of {', '.join(SEVERITIES)}, got {value!r}", "set severity: critical, warning or info"
        )
    return str(value)


Duration = Annotated[str, BeforeValidator(_duration)]
Severity = Annotated[str, BeforeValidator(_severity)]


class _Entry(BaseModel):
    """One key of the file. Its model is made per key from SCHEMA (`_entry_model`): only what the spec
    uses is a field, so anything else is refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KEY: ClassVar[str] = ""
    SPEC: ClassVar[Spec] = Spec()
    UNUSED: ClassVar[tuple[str, str]] = ("is not used for this key", "allowed: {allowed}")

    @model_validator(mode="before")
    @classmethod
    def _used_keys(cls, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, dict):
            raise _Invalid(f"must be a mapping, got {entry!r}", "write {warning: N, critical: N, for: 5m}")
        allowed = sorted(f.alias or name for name, f in cls.model_fields.items())
        if unused := sorted(set(entry) - set(allowed)):
            raise _Invalid(cls.UNUSED[0], cls.UNUSED[1].replace("{allowed}", ", ".join(allowed)), str(unused[0]))
        # `critical:` left empty is missing, not zero
        return {k: v for k, v in entry.items() if v is not None}

    @field_validator(*TIERS, "limit", mode="before", check_fields=False)
    @classmethod
    def _number(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be a number, got {value!r}", "write a plain number such as 0.05 or 200")
        if value < 0:
            raise _Invalid(f"must not be negative, got {value}", "use a value of 0 or more")
        if cls.SPEC.ratio and value > 1:
            raise _Invalid(f"is a ratio and must be at most 1, got {value}", "write 5 % as 0.05")
        if cls.SPEC.integer and float(value) != int(value):
            raise _Invalid(f"counts whole units, got {value}", "use a whole number")
        return float(value)

    def threshold(self) -> Threshold:
        spec = self.SPEC
        values = {name: getattr(self, name) for name in (*spec.tiers, "limit") if name in type(self).model_fields}
        return Threshold(
            self.KEY,
            getattr(self, "for", "0s"),
            values,
            getattr(self, "severity", None),
            spec.low_is_bad,
            spec.ratio,
            spec.integer,
        )


class _Gate(_Entry):
    UNUSED = ("is not used for a load-test gate", "write {limit: N}")
    limit: float


class _State(_Entry):
    severity: Severity = Field(default=None, validate_default=True)


class _Tiered(_Entry):
    @model_validator(mode="after")
    def _in_order(self) -> _Tiered:
        tiers = [(t, getattr(self, t)) for t in TIERS if t in type(self).model_fields]
        for (milder, a), (harsher, b) in zip(tiers, tiers[1:], strict=False):
            if a <= b if self.SPEC.low_is_bad else a >= b:
                relation = "above" if self.SPEC.low_is_bad else "below"
                raise _Invalid(
                    f"{milder} ({a:g}) must be {relation} {harsher} ({b:g})",
                    f"swap or correct the two values of {self.KEY}",
                )
        return self


def _entry_model(key: str, spec: Spec) -> type[_Entry]:
    base: type[_Entry] = _Gate if spec.gate else _State if spec.is_state else _Tiered
    # `for` is a keyword: only a model made at run time can have a field of that name.
    fields: dict[str, Any] = {} if spec.gate else {"for": (Duration, Field(default=None, validate_default=True))}
    fields.update({tier: (float, ...) for tier in spec.tiers})
    model = create_model(f"Threshold[{key}]", __base__=base, **fields)
    model.KEY, model.SPEC = key, spec
    return model


class _File(BaseModel):
    """The whole file; its sections and keys are fields made from SCHEMA (`_FILE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any, info: ValidationInfo) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise _Invalid(
                f"{(info.context or {}).get('path')} must hold a mapping of sections",
                "see alert_rules/thresholds.yml",
                "<file>",
            )
        # Every key is checked before any value: a misspelt key is named, not the one it misses.
        for section, entries in data.items():
            if not isinstance(entries, dict):
                raise _Invalid("must be a mapping of keys", "indent the keys under the section", str(section))
            for name in entries:
                if f"{section}.{name}" not in SCHEMA:
                    raise _Invalid(
                        "is not a known threshold", f"use one of: {', '.join(sorted(SCHEMA))}", str(section), str(name)
                    )
        # An unknown section still here is empty: there is nothing in it to refuse.
        return {section: entries for section, entries in data.items() if section in cls.model_fields}


def _file_model() -> type[_File]:
    sections: dict[str, dict[str, Any]] = {}
    for key, spec in SCHEMA.items():
        section, name = key.split(".", 1)
        sections.setdefault(section, {})[name] = (_entry_model(key, spec), ...)
    # A missing section is its keys missing, each named: the section defaults to {} and is validated.
    fields: dict[str, Any] = {
        section: (
            create_model(f"Section[{section}]", __config__=_File.model_config, **names),
            Field(default_factory=dict, validate_default=True),
        )
        for section, names in sections.items()
    }
    return create_model("Thresholds", __base__=_File, **fields)


_FILE = _file_model()


def _thresholds_error(exc: ValidationError, path: Path | str) -> ThresholdsError:
    """The first problem pydantic found, as the ThresholdsError the callers print."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    key = ".".join(str(part) for part in (*first["loc"], *getattr(cause, "under", ())))
    if isinstance(cause, _Invalid):
        return ThresholdsError(key, cause.problem, cause.fix)
    if first["type"] == "missing":
        section, name = key.rsplit(".", 1)
        if "." in section:
            return ThresholdsError(key, "is missing", f"add `{name}: <number>` to {section}")
        return ThresholdsError(key, "is missing", f"add `{name}:` under `{section}:` in {path}")
    return ThresholdsError(key or "<file>", first["msg"], "compare with alert_rules/thresholds.yml")


def validate(data: Any, path: Path | str = "<thresholds>") -> Thresholds:
    # `slos:` is not a section of threshold keys: its own models check it (Slos, below)
    slos_data = data.get("slos") if isinstance(data, dict) else None
    data = {k: v for k, v in data.items() if k != "slos"} if isinstance(data, dict) else data
    try:
        model = _FILE.model_validate(data, context={"path": path})
    except ValidationError as exc:
        raise _thresholds_error(exc, path) from None
    items = {}
    for key in SCHEMA:
        section, name = key.split(".", 1)
        items[key] = getattr(getattr(model, section), name).threshold()
    return Thresholds(items, Path(path), validate_slos(slos_data, path))


def load(path: str | Path | None = None) -> Thresholds:
    """Read and validate a thresholds file (default: the one beside this module)."""
    file = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdsError(
            "<file>", f"cannot read {file}: {exc.strerror}", "pass the path of thresholds.yml"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ThresholdsError("<file>", f"{file} is not valid YAML: {exc}", "fix the YAML syntax") from exc
    return validate(data, file)


# ----- the `slos:` section: service-level objectives and their burn-rate alert policy (alert_rules/slo.py) -----

# Prometheus' rule evaluation and scrape intervals: roles/prometheus/defaults/main.yml
# (prometheus_evaluation_interval, prometheus_scrape_interval; tests/observability/test_slo.py holds them
# equal). A window shorter than the evaluation interval is never evaluated whole, and rate() needs two
# scrapes inside its window, so no SLO window may be shorter than MIN_WINDOW_SECONDS.
EVALUATION_INTERVAL = "15s"
SCRAPE_INTERVAL = "15s"
MIN_WINDOW_SECONDS = max(duration_seconds(EVALUATION_INTERVAL), 2 * duration_seconds(SCRAPE_INTERVAL))
# The app's request-duration buckets (LATENCY_BUCKETS): read from its source, the control machine imports no app.
APP_METRICS = Path(__file__).resolve().parents[1] / "app" / "scalemart" / "metrics.py"


def app_latency_buckets(source: Path = APP_METRICS) -> tuple[float, ...]:
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "LATENCY_BUCKETS" for t in node.targets):
            return tuple(float(v) for v in ast.literal_eval(node.value))
    raise ThresholdsError(
        "slos.purchase_latency.latency_seconds",
        f"{source} defines no LATENCY_BUCKETS",
        "restore LATENCY_BUCKETS in app/scalemart/metrics.py",
    )


def _window(value: Any) -> str:
    text = _duration(value)
    if duration_seconds(text) < MIN_WINDOW_SECONDS:
        raise _Invalid(
            f"{text} is shorter than the rule evaluation interval ({EVALUATION_INTERVAL}) or two scrapes "
            f"({SCRAPE_INTERVAL} each)",
            f"use a window of at least {MIN_WINDOW_SECONDS:g}s",
        )
    return text


Window = Annotated[str, BeforeValidator(_window)]


class _SloModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_SloModel):
    """One SLO: the share of good events `objective` over `window` (latency ones: faster than `latency_seconds`)."""

    objective: float
    window: Window
    latency_seconds: float | None = None

    @field_validator("objective", mode="before")
    @classmethod
    def _fraction(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise _Invalid(f"must be a fraction strictly between 0 and 1, got {value!r}", "write 99.9 % as 0.999")
        return float(value)

    @property
    def budget(self) -> float:
        """The error budget: the share of bad events the objective allows."""
        return 1 - self.objective


class BurnWindow(_SloModel):
    """Fire while the error ratio is above burn_rate × budget over both `long` and `short`."""

    long: Window
    short: Window
    burn_rate: float = Field(gt=0)

    @model_validator(mode="after")
    def _long_over_short(self) -> BurnWindow:
        if duration_seconds(self.long) <= duration_seconds(self.short):
            raise _Invalid(
                f"long window {self.long} must be longer than the short window {self.short}",
                "swap the two windows",
                "long",
            )
        return self


class BurnPolicy(_SloModel):
    severity: Severity
    windows: list[BurnWindow] = Field(min_length=1)


class Slos(_SloModel):
    availability: Objective
    purchase_latency: Objective
    burn_rate_alerts: dict[str, BurnPolicy] = Field(min_length=1)
    # Tests only: divide every window by this factor (alert_rules/README.md "SLOs"); 1 in every real environment.
    compress_windows_for_tests: int = Field(default=1, ge=1)

    def objectives(self) -> dict[str, Objective]:
        return {"availability": self.availability, "purchase_latency": self.purchase_latency}

    def windows(self) -> list[str]:
        """Every window the policy reads, shortest first (the SLI is recorded over each)."""
        names = {w for p in self.burn_rate_alerts.values() for b in p.windows for w in (b.long, b.short)}
        return sorted(names, key=duration_seconds)

    def seconds(self, window: str) -> int:
        """A window as the rules evaluate it: divided by the test factor, in whole evaluation intervals, never
        below MIN_WINDOW_SECONDS."""
        step = duration_seconds(EVALUATION_INTERVAL)
        scaled = round(duration_seconds(window) / self.compress_windows_for_tests / step) * step
        return int(max(scaled, MIN_WINDOW_SECONDS))

    @model_validator(mode="after")
    def _consistent(self) -> Slos:
        buckets = app_latency_buckets()
        latency = self.purchase_latency.latency_seconds
        if latency is None:
            raise _Invalid(
                "is missing",
                "add `latency_seconds: 0.1` (a bucket of the app's histogram)",
                "purchase_latency",
                "latency_seconds",
            )
        if latency not in buckets:
            raise _Invalid(
                f"{latency:g} s is not a bucket of scalemart_http_request_duration_seconds",
                "use one of app/scalemart/metrics.py LATENCY_BUCKETS: " + ", ".join(f"{b:g}" for b in buckets),
                "purchase_latency",
                "latency_seconds",
            )
        if self.availability.latency_seconds is not None:
            raise _Invalid("is not used for availability", "remove it", "availability", "latency_seconds")
        for name, policy in self.burn_rate_alerts.items():
            for i, b in enumerate(policy.windows):
                where = ("burn_rate_alerts", name, "windows", str(i))
                if self.seconds(b.long) <= self.seconds(b.short):
                    raise _Invalid(
                        f"compressed by {self.compress_windows_for_tests}, {b.long} and {b.short} both "
                        f"last {self.seconds(b.short)}s",
                        "use a smaller compress_windows_for_tests",
                        *where,
                    )
                for slo, obj in self.objectives().items():
                    if duration_seconds(b.long) > duration_seconds(obj.window):
                        raise _Invalid(
                            f"{b.long} is longer than the {slo} window {obj.window}",
                            "use a long window within the objective's window",
                            *where,
                            "long",
                        )
                    if b.burn_rate * obj.budget >= 1:
                        raise _Invalid(
                            f"{b.burn_rate:g}x the {slo} budget is an error ratio of 100 % or more: it can never fire",
                            "lower burn_rate",
                            *where,
                            "burn_rate",
                        )
        return self


def validate_slos(data: Any, path: Path | str = "<thresholds>") -> Slos:
    if data is None:
        raise ThresholdsError("slos", "is missing", f"add the `slos:` section to {path}")
    try:
        return Slos.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        key = ".".join(str(p) for p in ("slos", *first["loc"], *getattr(cause, "under", ())))
        if isinstance(cause, _Invalid):
            raise ThresholdsError(key, cause.problem, cause.fix) from None
        if first["type"] == "extra_forbidden":
            raise ThresholdsError(
                key, "is not a known SLO key", "compare with `slos:` in alert_rules/thresholds.yml"
            ) from None
        if first["type"] == "missing":
            raise ThresholdsError(key, "is missing", f"add it under `slos:` in {path}") from None
        raise ThresholdsError(key, first["msg"], "compare with `slos:` in alert_rules/thresholds.yml") from None
