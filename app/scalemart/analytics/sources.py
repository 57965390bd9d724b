"""Where the analytics console reads what the shop itself does not count: Prometheus' and Alertmanager's
HTTP APIs, and the short-lived cache in front of every answer.

A source that cannot be reached (no URL set, refused, timed out, an error answer) becomes a 503
`source_unavailable` naming the source and its setting; the endpoints that do not need it keep working, and an
answer that only partly needs it (the alerts: their resolved part) carries that 503 body as the part's
`unavailable` entry instead (`error_body`).
Each answer, and each failure, is kept for `SCALEMART_ANALYTICS_CACHE_SECONDS`, and callers that arrive
while it is being computed wait for that one computation: N open browsers cost each source one round of
queries per interval and process, whatever N is.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from scalemart.errors import ApiError
from scalemart.settings import ENV_PREFIX, Settings

PROMETHEUS, ALERTMANAGER = "prometheus", "alertmanager"
SOURCE_UNAVAILABLE = "source_unavailable"
_EVALUATION_INTERVAL = re.compile(r"^\s+evaluation_interval:\s*(\d+[smhdwy])\s*$", re.MULTILINE)
_SETTING = {PROMETHEUS: f"{ENV_PREFIX}PROMETHEUS_URL", ALERTMANAGER: f"{ENV_PREFIX}ALERTMANAGER_URL"}


def unavailable(source: str, url: str, reason: str) -> ApiError:
    setting = _SETTING[source]
    where = f"at {url}" if url else f"({setting} is not set)"
    return ApiError(
        503,
        SOURCE_UNAVAILABLE,
        f"{source} is unreachable {where}: {reason}; this figure needs it, the other analytics "
        f"endpoints keep working; check that {source} runs and that {setting} points at it",
        field=setting,
        details={"source": source},
        headers={"Retry-After": "5"},
    )


def error_body(exc: ApiError) -> dict[str, Any]:
    """The JSON body `exc` answers as (ErrorOut's fields), for the part of an answer it leaves out."""
    return {"error": exc.error, "message": exc.message, "field": exc.field, "details": exc.details}


class TtlCache:
    """Answers (or the ApiError they raised) by key for `ttl` seconds; one computation per key at a time."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._done: dict[str, tuple[float, Any, ApiError | None]] = {}
        self._running: dict[str, asyncio.Future[Any]] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._done.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            if hit[2] is not None:
                raise hit[2]
            return hit[1]
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await compute()
        except ApiError as exc:
            self._done[key] = (time.monotonic(), None, exc)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            self._done[key] = (time.monotonic(), value, None)
            future.set_result(value)
            return value
        finally:
            del self._running[key]


def number(text: str) -> float | None:
    """A Prometheus sample value; NaN and infinities (0/0, a quantile of nothing) are no figure."""
    v = float(text)
    return v if math.isfinite(v) else None


def split_credential(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """A source URL without its user:password (for messages) and that credential as basic auth."""
    if not url:
        return url, None
    u = httpx.URL(url)
    if not u.username:
        return url, None
    return str(u.copy_with(username=None, password=None)).rstrip("/"), httpx.BasicAuth(u.username, u.password)


class Sources:
    """The HTTP clients of one API process (closed with its state)."""

    def __init__(self, settings: Settings) -> None:
        self.prometheus_url, prometheus_auth = split_credential(settings.prometheus_url)
        self.alertmanager_url, alertmanager_auth = split_credential(settings.alertmanager_url)
        self._auth = {PROMETHEUS: prometheus_auth, ALERTMANAGER: alertmanager_auth}
        self.cache = TtlCache(settings.analytics_cache_seconds)
        self.http = httpx.AsyncClient(
            timeout=settings.analytics_timeout_seconds, headers={"Accept": "application/json"}
        )

    async def _get(self, source: str, base: str, path: str, params: dict[str, Any]) -> Any:
        if not base:
            raise unavailable(source, base, "no URL is configured")
        auth = self._auth[source]
        try:
            r = await self.http.get(base + path, params=params, auth=auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise unavailable(source, base, f"{type(exc).__name__} {exc}".strip()) from None
        if r.status_code == 401:
            given = "a wrong credential" if auth else "no credential"
            raise unavailable(
                source,
                base,
                f"{path} answered HTTP 401: {source} asks for basic auth and got "
                f"{given}; put it in the URL as http://user:password@host:port",
            )
        if r.status_code != 200:
            raise unavailable(source, base, f"{path} answered HTTP {r.status_code}: {r.text[:200]}")
        try:
            return r.json()
        except ValueError:
            raise unavailable(source, base, f"{path} did not answer JSON") from None

    async def _prometheus(self, path: str, params: dict[str, Any]) -> Any:
        body = await self._get(PROMETHEUS, self.prometheus_url, path, params)
        if body.get("status") != "success":
            raise unavailable(PROMETHEUS, self.prometheus_url, f"{path}: {body.get('error', body)}")
        return body["data"]

    async def vector(self, expr: str) -> list[tuple[dict[str, str], float | None]]:
        """An instant query: (labels, value) per series."""
        data = await self._prometheus("/api/v1/query", {"query": expr})
        if data["resultType"] == "scalar":
            return [({}, number(data["result"][1]))]
        return [(r["metric"], number(r["value"][1])) for r in data["result"]]

    async def scalar(self, expr: str) -> float | None:
        """The one value of an aggregated query, None when it has no series."""
        rows = await self.vector(expr)
        return rows[0][1] if rows else None

    async def matrix(self, expr: str, seconds: int, step: int) -> list[tuple[dict[str, str], list[list[float]]]]:
        """A range query over the last `seconds`: (labels, [[unix time, value], ...]) per series."""
        end = time.time()
        data = await self._prometheus(
            "/api/v1/query_range", {"query": expr, "start": end - seconds, "end": end, "step": step}
        )
        out = []
        for r in data["result"]:
            points = [[float(t), v] for t, text in r["values"] if (v := number(text)) is not None]
            out.append((r["metric"], points))
        return out

    async def alerting_rules(self) -> list[dict[str, Any]]:
        data = await self._prometheus("/api/v1/rules", {"type": "alert"})
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def evaluation_interval(self) -> str:
        """How often Prometheus evaluates its rules (its global evaluation_interval), e.g. "15s"."""
        data = await self._prometheus("/api/v1/status/config", {})
        found = _EVALUATION_INTERVAL.search(data["yaml"])
        return found.group(1) if found else "1m"  # Prometheus' own default

    async def active_alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's alerts that are not resolved, silenced and inhibited ones included."""
        alerts = await self._get(
            ALERTMANAGER,
            self.alertmanager_url,
            "/api/v2/alerts",
            {"active": "true", "silenced": "true", "inhibited": "true"},
        )
        return list(alerts)

    async def aclose(self) -> None:
        await self.http.aclose()
