"""The analytics JSON API: what the console page polls and what other tools (chat bots, status pages) call.

Admin only, as the rest of the admin API: the admin token as a Bearer header, or the page's login session.
A figure whose source is unreachable answers 503 `source_unavailable` naming it; a bad `window` 422. The alerts
need Alertmanager: without Prometheus they answer the active ones, the resolved part null and its 503 body in
`unavailable`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from scalemart.analytics import figures
from scalemart.analytics.session import require_viewer
from scalemart.deps import StateDep, rate_limit
from scalemart.errors import ADMIN_ERRORS, API_ERRORS, error_responses

router = APIRouter(
    tags=["analytics"],
    dependencies=[Depends(rate_limit), Depends(require_viewer)],
    responses={**API_ERRORS, **ADMIN_ERRORS, **error_responses(503)},
)


@router.get("/analytics/api/metrics/realtime")
async def realtime(st: StateDep) -> dict[str, Any]:
    """CPU, memory and disk of each host against its own limits; database connections; Redis memory against
    maxmemory; the order queue's length and age (from Prometheus)."""
    return await figures.realtime(st)


@router.get("/analytics/api/metrics/performance")
async def performance(
    st: StateDep, window: Annotated[figures.Window, Query(description="the span the rates and quantiles cover")] = "5m"
) -> dict[str, Any]:
    """Average, p50, p95 and p99 response time, requests per minute, error and cache-hit ratios, overall and per
    route, over `window`; sparklines of requests per minute and p95 over the last hour (from Prometheus)."""
    return await figures.performance(st, window)


@router.get("/analytics/api/metrics/business")
async def business(st: StateDep) -> dict[str, Any]:
    """Products on sale, sold out and low on stock; orders and revenue today (UTC) and in the last hour; the
    average order value; conversion; the top products by revenue (from the shop's counters)."""
    return await figures.business(st)


@router.get("/analytics/api/metrics/users")
async def users(st: StateDep) -> dict[str, Any]:
    """Users active in the last minute, 5 minutes, hour and today (UTC); today's buyers, returning and first-time
    (from the shop's counters)."""
    return await figures.users(st)


@router.get("/analytics/api/alerts")
async def alerts(st: StateDep) -> dict[str, Any]:
    """The active alerts (Alertmanager: severity, since, summary, runbook) and the last 5 resolved in the last
    day (Prometheus' ALERTS history; `since` is the start of their last firing). 503 without Alertmanager; without
    Prometheus `resolved` is null and `unavailable.resolved` the 503 body naming it (`unavailable` is {} when
    every part is there)."""
    return await figures.alerts(st)
