"""The figures of the analytics console, one function per endpoint, each answer cached (sources.TtlCache).

- system and performance figures come from Prometheus: the hosts' and datastores' recorded series
  (alert_rules/records.py, the same signals the alerts compare) and the app's own request metrics;
- business and user figures come from the shop's own counters in Redis, kept by the buy script;
- alerts come from Alertmanager (active) and Prometheus' `ALERTS` history (the last resolved ones); with
  Prometheus down the active ones are still answered, the resolved part marked unavailable.

Every Prometheus selector carries `env="<SCALEMART_ENVIRONMENT>"`, the label every target has. `ALERTS` has it
too: every alert rule keeps `env` (alert_rules/: raw series or `by (env, ...)`), but for the Watchdog
(`vector(1)`), which always fires and so is never among the resolved ones.
The console's own routes, /metrics and the health checks are left out of the performance figures.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Literal

from scalemart import metrics, queries, store
from scalemart.analytics import sources
from scalemart.errors import ApiError, redis_unavailable
from scalemart.state import State

Window = Literal["5m", "15m", "1h", "6h", "24h"]
SPARKLINE_SECONDS, SPARKLINE_STEP = 3600, 60
TOP_PRODUCTS = 5
RESOLVED_SHOWN = 5
# how far back the resolved alerts are looked for (at the resolution of Prometheus' rule evaluations, the
# spacing of the ALERTS samples: then no firing, however short, falls between two steps)
ALERT_HISTORY = "24h"
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}

# the app's metric names, from their one definition (a Counter's name has no _total)
REQUESTS = metrics.HTTP_REQUESTS._name + "_total"
DURATION = metrics.HTTP_DURATION._name
CACHE_HITS = metrics.CACHE_HITS._name + "_total"
CACHE_MISSES = metrics.CACHE_MISSES._name + "_total"
NOT_SHOP = 'route!~"/analytics/.*|/metrics|/health/.*"'
SERVER_ERROR = 'status=~"5.."'

HOST_RECORDS = {
    "cpu_ratio": "instance:scalemart_host_cpu_usage:ratio",
    "memory_ratio": "instance:scalemart_host_memory_usage:ratio",
    "disk_ratio": "instance:scalemart_host_disk_used:max_ratio",
}
REDIS_RECORDS = {
    "used_bytes": "instance:scalemart_redis_memory_used:bytes",
    "max_bytes": "instance:scalemart_redis_memory_max:bytes",
    "ratio": "instance:scalemart_redis_memory:ratio",
}
CONNECTIONS_RECORD = "instance:scalemart_database_connections:count"
QUEUE_LENGTH, QUEUE_AGE = "scalemart_queue_length", "scalemart_queue_oldest_message_age_seconds"
# what names a host: the node exporter's own uname (the host's hostname)
HOST_NAMES = "node_uname_info"
HISTORY_SERIES = "ALERTS"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Sel:
    """Selectors of one environment."""

    def __init__(self, environment: str) -> None:
        self.env = f'env="{environment}"'

    def __call__(self, metric: str, *matchers: str) -> str:
        return f"{metric}{{{','.join((self.env, *matchers))}}}"


def _by_instance(rows: list[tuple[dict[str, str], float | None]]) -> dict[str, float | None]:
    return {labels.get("instance", ""): v for labels, v in rows}


async def realtime(st: State) -> dict[str, Any]:
    return await st.analytics.cache.get("realtime", lambda: _realtime(st))


async def _realtime(st: State) -> dict[str, Any]:
    src, sel = st.analytics, _Sel(st.settings.environment)
    names, *host_rows = await asyncio.gather(
        src.vector(sel(HOST_NAMES)), *(src.vector(sel(r)) for r in HOST_RECORDS.values())
    )
    per_figure = {fig: _by_instance(rows) for fig, rows in zip(HOST_RECORDS, host_rows, strict=True)}
    hostname = {labels.get("instance", ""): labels.get("nodename", "") for labels, _ in names}
    instances = sorted(set(hostname) | {i for v in per_figure.values() for i in v}, key=lambda i: hostname.get(i) or i)
    hosts = [
        {"host": hostname.get(i) or i, "instance": i, **{fig: per_figure[fig].get(i) for fig in HOST_RECORDS}}
        for i in instances
    ]
    redis_used, redis_max, redis_ratio, connections, length, age = await asyncio.gather(
        *(src.scalar(f"max({sel(r)})") for r in REDIS_RECORDS.values()),
        src.scalar(f"sum({sel(CONNECTIONS_RECORD)})"),
        src.scalar(f"max({sel(QUEUE_LENGTH)})"),
        src.scalar(f"max({sel(QUEUE_AGE)})"),
    )
    return {
        "generated_at": _now(),
        "hosts": hosts,
        "database": {"connections": connections},
        "redis": {"used_bytes": redis_used, "max_bytes": redis_max, "ratio": redis_ratio},
        "queue": {"length": length, "age_seconds": age},
    }


def _performance_queries(sel: _Sel, window: str, by: str) -> dict[str, str]:
    def rate(metric: str, *matchers: str, extra_by: str = "") -> str:
        group = ", ".join(p for p in (by, extra_by) if p)
        return f"sum{f' by ({group})' if group else ''} (rate({sel(metric, NOT_SHOP, *matchers)}[{window}]))"

    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, {rate(DURATION + '_bucket', extra_by='le')})"

    requests = rate(REQUESTS)
    return {
        "avg_seconds": f"{rate(DURATION + '_sum')} / {rate(DURATION + '_count')}",
        "p50_seconds": quantile(0.5),
        "p95_seconds": quantile(0.95),
        "p99_seconds": quantile(0.99),
        "requests_per_minute": f"{requests} * 60",
        # no 5xx series yet (a healthy shop) is a ratio of 0, not no figure
        "error_ratio": f"({rate(REQUESTS, SERVER_ERROR)} or {requests} * 0) / {requests}",
    }


async def performance(st: State, window: Window) -> dict[str, Any]:
    return await st.analytics.cache.get(f"performance:{window}", lambda: _performance(st, window))


async def _performance(st: State, window: Window) -> dict[str, Any]:
    src, sel = st.analytics, _Sel(st.settings.environment)
    overall_q = _performance_queries(sel, window, "")
    routes_q = _performance_queries(sel, window, "route, method")
    hits, misses = f"sum(rate({sel(CACHE_HITS)}[{window}]))", f"sum(rate({sel(CACHE_MISSES)}[{window}]))"
    spark = _performance_queries(sel, "2m", "")
    overall_values, route_rows, (cache_hit_ratio, rpm_series, p95_series) = await asyncio.gather(
        asyncio.gather(*(src.scalar(q) for q in overall_q.values())),
        asyncio.gather(*(src.vector(q) for q in routes_q.values())),
        asyncio.gather(
            src.scalar(f"{hits} / ({hits} + {misses})"),
            src.matrix(spark["requests_per_minute"], SPARKLINE_SECONDS, SPARKLINE_STEP),
            src.matrix(spark["p95_seconds"], SPARKLINE_SECONDS, SPARKLINE_STEP),
        ),
    )
    overall = dict(zip(overall_q, overall_values, strict=True))
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    for fig, rows in zip(routes_q, route_rows, strict=True):
        for labels, v in rows:
            key = (labels.get("route", ""), labels.get("method", ""))
            routes.setdefault(key, {"route": key[0], "method": key[1], **dict.fromkeys(routes_q)})[fig] = v
    return {
        "generated_at": _now(),
        "window": window,
        "overall": {**overall, "cache_hit_ratio": cache_hit_ratio},
        "routes": sorted(routes.values(), key=lambda r: -(r["requests_per_minute"] or 0)),
        "sparklines": {
            "requests_per_minute": rpm_series[0][1] if rpm_series else [],
            "p95_seconds": p95_series[0][1] if p95_series else [],
        },
    }


def _units(cents: Any) -> float:
    return store.cents_to_units(int(cents or 0))


def _share(part: float, whole: float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


async def business(st: State) -> dict[str, Any]:
    return await st.analytics.cache.get("business", lambda: _business(st))


async def _business(st: State) -> dict[str, Any]:
    what = "computing the business figures"
    products, rows, _ = await queries.product_stats(st, what)
    now = time.time()
    minute, day = int(now // 60), int(now // 86400)
    try:
        pipe = st.redis.pipeline(transaction=False)
        for m in range(minute - 59, minute + 1):
            pipe.hmget(store.sales_minute_key(m), ["orders", "revenue_cents"])
        pipe.hmget(store.sales_day_key(day), ["orders", "revenue_cents"])
        *minutes, today = await pipe.execute()
    except store.REDIS_DOWN:
        raise redis_unavailable(what) from None
    low = st.settings.low_stock_units
    on_sale = [
        r for p, r in zip(products, rows, strict=True) if queries.sale_open_now(p, now) and (r["stock_left"] or 0) > 0
    ]
    orders_total, revenue_total = sum(r["orders"] for r in rows), round(sum(r["revenue"] for r in rows), 2)
    orders_today, revenue_today = int(today[0] or 0), _units(today[1])
    top = sorted(rows, key=lambda r: (-r["revenue"], -r["orders"], r["product_id"]))[:TOP_PRODUCTS]
    return {
        "generated_at": _now(),
        "products": {
            "total": len(rows),
            "on_sale": len(on_sale),
            "sold_out": sum(1 for r in rows if r["stocked"] and r["stock_left"] == 0),
            "low_stock": sum(1 for r in on_sale if r["stock_left"] <= low),
            "low_stock_units": low,
        },
        "orders": {"today": orders_today, "last_hour": sum(int(o or 0) for o, _ in minutes), "total": orders_total},
        "revenue": {
            "today": revenue_today,
            "last_hour": round(sum(_units(c) for _, c in minutes), 2),
            "total": revenue_total,
        },
        "average_order_value": {
            "today": _share(revenue_today, orders_today, 2),
            "total": _share(revenue_total, orders_total, 2),
        },
        "conversion": _share(orders_total, sum(r["views"] for r in rows)),
        "top_products": [
            {k: r[k] for k in ("product_id", "name", "orders", "units_sold", "revenue", "stock_left", "conversion")}
            for r in top
        ],
    }


async def users(st: State) -> dict[str, Any]:
    return await st.analytics.cache.get("users", lambda: _users(st))


async def _users(st: State) -> dict[str, Any]:
    now = time.time()
    now_ms, day = now * 1000, int(now // 86400)
    since = {
        "now": now_ms - 60_000,
        "last_5m": now_ms - store.ACTIVE_WINDOW_MS,
        "last_hour": now_ms - 3_600_000,
        "today": day * 86_400_000,
    }
    try:
        pipe = st.redis.pipeline(transaction=False)
        for start in since.values():
            pipe.zcount(store.ACTIVE_USERS, start, "+inf")
        pipe.scard(store.buyers_day_key(day))
        pipe.hget(store.sales_day_key(day), "first_time_buyers")
        *active, buyers, first_time = await pipe.execute()
    except store.REDIS_DOWN:
        raise redis_unavailable("computing the user figures") from None
    first = int(first_time or 0)
    return {
        "generated_at": _now(),
        "active": dict(zip(since, (int(a) for a in active), strict=True)),
        "buyers_today": {"total": int(buyers), "returning": max(int(buyers) - first, 0), "first_time": first},
    }


async def alerts(st: State) -> dict[str, Any]:
    return await st.analytics.cache.get("alerts", lambda: _alerts(st))


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


def _rank(a: dict[str, Any]) -> tuple[int, str]:
    return SEVERITY_ORDER.get(a["severity"], len(SEVERITY_ORDER)), a["name"]


async def _alerts(st: State) -> dict[str, Any]:
    # The active alerts need Alertmanager only: without Prometheus they are still answered, and the resolved part
    # says why it is missing (the 503 body it would have been) instead of failing the whole answer.
    active_raw, (resolved, unavailable) = await asyncio.gather(st.analytics.active_alerts(), _resolved_part(st))
    active = [
        {
            "name": a["labels"].get("alertname", ""),
            "severity": a["labels"].get("severity", ""),
            "state": a.get("status", {}).get("state", "active"),
            "since": a.get("startsAt"),
            "summary": a.get("annotations", {}).get("summary", ""),
            "runbook_url": a.get("annotations", {}).get("runbook_url", ""),
            "labels": a["labels"],
        }
        for a in active_raw
    ]
    active.sort(key=lambda a: (_rank(a), a["since"] or ""))
    return {"generated_at": _now(), "active": active, "resolved": resolved, "unavailable": unavailable}


async def _resolved_part(st: State) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    try:
        return await _resolved(st), {}
    except ApiError as exc:
        if exc.error != sources.SOURCE_UNAVAILABLE:
            raise
        return None, {"resolved": sources.error_body(exc)}


async def _resolved(st: State) -> list[dict[str, Any]]:
    """The last resolved alerts: when each last fired, from the start of its last firing episode."""
    src, sel = st.analytics, _Sel(st.settings.environment)
    firing = sel(HISTORY_SERIES, 'alertstate="firing"')
    step = await src.evaluation_interval()
    history = f"timestamp({firing})[{ALERT_HISTORY}:{step}]"
    # An episode starts where the alert fires and did not one evaluation before (a resolved alert's series gets a
    # staleness marker, so the gap is seen however short); its timestamp is that first firing sample's. An alert
    # firing since before the window has no start in it: the earliest sample in the window is what is known.
    starts = f"(timestamp({firing}) unless {firing} offset {step})[{ALERT_HISTORY}:{step}]"
    rules, last_seen, last_started = await asyncio.gather(
        src.alerting_rules(),
        src.vector(f"max_over_time({history}) unless {firing}"),
        src.vector(f"max_over_time({starts}) or min_over_time({history})"),
    )
    notes = {(r["name"], r.get("labels", {}).get("severity", "")): r.get("annotations", {}) for r in rules}
    started = {_key(labels): v for labels, v in last_started}
    resolved = []
    for labels, last in sorted(last_seen, key=lambda row: -(row[1] or 0))[:RESOLVED_SHOWN]:
        shown = {k: v for k, v in labels.items() if k not in ("__name__", "alertstate")}
        name, severity = shown.get("alertname", ""), shown.get("severity", "")
        note = notes.get((name, severity), {})
        first = started.get(_key(labels))
        resolved.append(
            {
                "name": name,
                "severity": severity,
                "since": _iso(first) if first else None,
                "resolved_at": _iso(last) if last else None,
                "summary": note.get("summary", ""),
                "runbook_url": note.get("runbook_url", ""),
                "labels": shown,
            }
        )
    return resolved


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))
