"""The catalogue: products with their live stock, read through the cache (queries.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from scalemart import metrics, queries, store
from scalemart.deps import LIMITED, ProductId, StateDep
from scalemart.errors import API_ERRORS, error_responses
from scalemart.models import ProductList, ProductOut

router = APIRouter(tags=["catalogue"], dependencies=LIMITED)


@router.get("/api/products", response_model=ProductList, responses={**API_ERRORS, **error_responses(503)})
async def list_products(st: StateDep) -> dict[str, Any]:
    docs, stale = await queries.list_catalogue(st)
    metrics.known_products([d["id"] for d in docs])
    stocks: list[tuple[int | None, int | None]] = []
    if not stale and docs:
        try:
            pipe = st.redis.pipeline(transaction=False)
            for d in docs:
                pipe.hmget(store.product_key(d["id"]), ["stock", "stocked"])
            stocks = [(queries.int_or_none(a), queries.int_or_none(b)) for a, b in await pipe.execute()]
            for d, s in zip(docs, stocks, strict=True):
                st.last_stock[d["id"]] = s
        except store.REDIS_DOWN:
            stale = True
    if stale:
        stocks = [st.last_stock.get(d["id"], (None, None)) for d in docs]
    return {
        "products": [queries.product_out(d, a, b, stale) for d, (a, b) in zip(docs, stocks, strict=True)],
        "stale": stale,
    }


@router.get(
    "/api/products/{product_id}", response_model=ProductOut, responses={**API_ERRORS, **error_responses(404, 503)}
)
async def get_product(st: StateDep, product_id: ProductId) -> dict[str, Any]:
    return await queries.read_product(st, product_id)
