"""Probes and the Prometheus scrape: never rate limited, so probes and scrapers always get through."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pymongo.errors import PyMongoError

from scalemart import metrics, store
from scalemart.deps import StateDep
from scalemart.errors import error_responses
from scalemart.models import Health

router = APIRouter()
# a query parameter named like an operator is refused before any route (api.ObserveMiddleware)
QUERY_ERRORS = error_responses(422)


async def oldest_queued_age(r: Any) -> float:
    """Age in seconds of the oldest order waiting in the stream (0 when empty)."""
    first = await r.xrange(store.STREAM, count=1)
    if not first:
        return 0.0
    first_ms = int(first[0][0].split("-")[0])
    return max(time.time() - first_ms / 1000, 0.0)


@router.get("/health/live", response_model=Health, responses=QUERY_ERRORS, tags=["health"])
async def live() -> dict[str, Any]:
    return {"status": "live"}


@router.get("/health/ready", response_model=Health, responses={**QUERY_ERRORS, 503: {"model": Health}}, tags=["health"])
async def ready(st: StateDep) -> Any:
    checks: dict[str, str] = {}

    async def redis_check() -> None:
        try:
            await st.redis.ping()
            age = await oldest_queued_age(st.redis)
        except store.REDIS_DOWN as exc:
            checks["redis"] = f"unreachable: {exc.__class__.__name__}"
            checks["worker_lag"] = "unknown (redis unreachable)"
            return
        checks["redis"] = "ok"
        bound = st.settings.ready_max_queue_age_seconds
        checks["worker_lag"] = (
            "ok"
            if age <= bound
            else (f"oldest queued order is {age:.0f} s old (bound {bound:.0f} s); is `scalemart worker` running?")
        )

    async def mongo_check() -> None:
        try:
            await st.mongo.admin.command("ping")
            checks["mongodb"] = "ok"
        except PyMongoError as exc:
            checks["mongodb"] = f"unreachable: {exc.__class__.__name__}"

    await asyncio.gather(redis_check(), mongo_check())
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(st: StateDep) -> Response:
    stock: dict[str, int] = {}
    active: int | None = None
    try:
        ids = sorted(await st.redis.smembers(store.PRODUCTS))
        pipe = st.redis.pipeline(transaction=False)
        for pid in ids:
            pipe.hget(store.product_key(pid), "stock")
        now_ms = time.time() * 1000
        pipe.zremrangebyscore(store.ACTIVE_USERS, 0, now_ms - store.ACTIVE_RETENTION_MS)
        pipe.zcount(store.ACTIVE_USERS, now_ms - store.ACTIVE_WINDOW_MS, "+inf")
        values = await pipe.execute()
        stock = {pid: int(v) for pid, v in zip(ids, values[:-2], strict=True) if v is not None}
        active = int(values[-1])
    except store.REDIS_DOWN:
        pass  # the scrape still returns the process metrics; the Redis-backed gauges are absent
    body = metrics.render(metrics.SnapshotCollector(stock, active))
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
