"""Admin: create, restock and open or close products; live stats; reconcile; buyer tokens. Rate limited, then the
token."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from scalemart import queries, reconcile, store, tokens
from scalemart.deps import ADMIN, ProductId, StateDep
from scalemart.errors import (
    ADMIN_ERRORS,
    API_ERRORS,
    BODY_ERRORS,
    ApiError,
    error_responses,
    mongo_unavailable,
    product_incomplete,
    redis_unavailable,
)
from scalemart.models import (
    PRODUCT_ID,
    ProductCreate,
    ProductOut,
    ProductStats,
    ReconcileOut,
    RestockIn,
    SaleIn,
    StatsOut,
    StatsTotals,
    TokenIn,
    TokenOut,
)

router = APIRouter(tags=["admin"], dependencies=ADMIN, responses={**API_ERRORS, **ADMIN_ERRORS})


@router.post(
    "/api/admin/products",
    response_model=ProductOut,
    status_code=201,
    responses={**BODY_ERRORS, **error_responses(409, 503)},
)
async def create_product(st: StateDep, body: ProductCreate) -> Any:
    starts, ends = body.epochs()
    limit = body.per_user_limit or st.settings.default_per_user_limit
    doc: dict[str, Any] = {
        "_id": body.id,
        "name": body.name,
        "price_cents": body.price_cents,
        "per_user_limit": limit,
        "sale_open": body.open,
        "starts_at": starts,
        "ends_at": ends,
        "initial_stock": body.stock,
        "created_at": datetime.now(UTC),
    }
    if not await queries.insert_product(st, doc):
        # A create that failed half-way (Redis down after the insert) is finished by retrying it.
        try:
            exists = await st.redis.exists(store.product_key(body.id))
        except store.REDIS_DOWN:
            raise redis_unavailable("creating a product") from None
        if exists:
            raise ApiError(
                409,
                "product_exists",
                f"id '{body.id}' is already a product; restock it with POST /api/admin/products/{body.id}/restock",
                field="id",
            )
        doc = await queries.find_product(st, body.id, "creating a product") or doc
    try:
        await st.scripts.create(
            keys=[store.product_key(body.id)],
            args=[
                doc["initial_stock"],
                doc["price_cents"],
                doc["per_user_limit"],
                int(doc["sale_open"]),
                doc["starts_at"],
                doc["ends_at"],
            ],
        )
        await st.redis.sadd(store.PRODUCTS, body.id)
        await queries.invalidate(st, body.id)
        stock, stocked = await queries.stock_of(st, body.id)
    except store.REDIS_DOWN:
        raise redis_unavailable("creating a product (retry the same request to finish it)") from None
    out = queries.product_out(queries.catalogue_doc(doc), stock, stocked, False)
    return JSONResponse(queries.product_json(out), status_code=201)


@router.post(
    "/api/admin/products/{product_id}/restock",
    response_model=ProductOut,
    responses={**BODY_ERRORS, **error_responses(404, 503)},
)
async def restock(st: StateDep, body: RestockIn, product_id: ProductId) -> Any:
    doc = await queries.product_or_404(st, product_id)
    try:
        res = await st.scripts.restock(keys=[store.product_key(product_id)], args=[body.quantity])
        if res == -1:
            raise product_incomplete(product_id)
        await queries.invalidate(st, product_id)
    except store.REDIS_DOWN:
        raise redis_unavailable("restocking") from None
    return queries.product_out(queries.catalogue_doc(doc), int(res[0]), int(res[1]), False)


@router.post(
    "/api/admin/products/{product_id}/sale",
    response_model=ProductOut,
    responses={**BODY_ERRORS, **error_responses(404, 409, 503)},
)
async def sale(st: StateDep, body: SaleIn, product_id: ProductId) -> Any:
    await queries.product_or_404(st, product_id)
    starts, ends = body.epochs()
    is_open = body.action == "open"
    doc = await queries.set_sale(st, product_id, is_open, starts, ends)
    try:
        if await st.scripts.sale(keys=[store.product_key(product_id)], args=[int(is_open), starts, ends]) == -1:
            raise product_incomplete(product_id)
        await queries.invalidate(st, product_id)
        stock, stocked = await queries.stock_of(st, product_id)
    except store.REDIS_DOWN:
        raise redis_unavailable("changing the sale (retry the same request)") from None
    return queries.product_out(queries.catalogue_doc(doc), stock, stocked, False)


@router.get("/api/admin/stats", response_model=StatsOut, responses=error_responses(503))
async def stats(st: StateDep) -> dict[str, Any]:
    # live counters from Redis, never a scan of MongoDB (see queries.product_stats)
    _, rows, queued = await queries.product_stats(st, "computing stats")
    total_orders = sum(r["orders"] for r in rows)
    total_views = sum(r["views"] for r in rows)
    totals = StatsTotals(
        orders=total_orders,
        units_sold=sum(r["units_sold"] for r in rows),
        revenue=round(sum(r["revenue"] for r in rows), 2),
        views=total_views,
        conversion=round(total_orders / total_views, 4) if total_views else None,
        queued_orders=queued,
    )
    return {"products": [ProductStats(**r) for r in rows], "totals": totals}


@router.get("/api/admin/reconcile", response_model=ReconcileOut, responses=error_responses(503))
async def reconcile_endpoint(
    st: StateDep, product_id: str | None = Query(default=None, pattern=PRODUCT_ID), require_drained: bool = False
) -> dict[str, Any]:
    """`scalemart reconcile` over HTTP: reads every order in MongoDB (slow with many; not for dashboards)."""
    try:
        rows = await asyncio.to_thread(reconcile.collect, st.settings, product_id)
    except store.REDIS_DOWN:
        raise redis_unavailable("reconciling") from None
    except PyMongoError:
        raise mongo_unavailable("reconciling") from None
    out = [{**dataclasses.asdict(r), "taken": r.taken, "problems": r.problems(require_drained)} for r in rows]
    return {"clean": not any(r["problems"] for r in out), "products": out}


@router.post("/api/admin/tokens", response_model=TokenOut, status_code=201, responses=BODY_ERRORS)
async def issue_token(st: StateDep, body: TokenIn) -> dict[str, Any]:
    """A buyer token for `user_id`, valid `ttl_seconds`: what the shop's own login service hands a buyer."""
    issued = tokens.issue(st.buyer_key, body.user_id, body.ttl_seconds)
    return {
        "token": issued.token,
        "user_id": issued.user_id,
        "expires_at": datetime.fromtimestamp(issued.expires_at, UTC),
    }
