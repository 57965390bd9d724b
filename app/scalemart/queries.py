"""The routes' catalogue and orders in MongoDB, and the Redis catalogue cache in front of the reads.

The catalogue lives in MongoDB `products` and is cached in Redis (`SCALEMART_CACHE_TTL_SECONDS`)
and, for when Redis is unreachable, in the process (`SCALEMART_LOCAL_CACHE_TTL_SECONDS`); stock
always comes from Redis, or is the last known stock flagged `stale`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from scalemart import metrics, store
from scalemart.errors import mongo_unavailable, redis_unavailable, unknown_product
from scalemart.state import State


def int_or_none(v: Any) -> int | None:
    return int(v) if v is not None and v is not False else None


def _iso(epoch: int) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def sale_open_now(doc: dict[str, Any], now: float) -> bool:
    """Whether a catalogue doc's sale is open at `now`: its flag and its window."""
    starts, ends = doc.get("starts_at", 0), doc.get("ends_at", 0)
    return bool(doc.get("sale_open")) and (not starts or now >= starts) and (not ends or now < ends)


def catalogue_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The cached catalogue fields of a product (JSON-safe)."""
    return {
        "id": doc["_id"],
        "name": doc["name"],
        "price_cents": doc["price_cents"],
        "per_user_limit": doc["per_user_limit"],
        "sale_open": doc["sale_open"],
        "starts_at": doc.get("starts_at", 0),
        "ends_at": doc.get("ends_at", 0),
    }


def product_out(cat: dict[str, Any], stock: int | None, stocked: int | None, stale: bool) -> dict[str, Any]:
    open_now = sale_open_now(cat, time.time())
    return {
        "id": cat["id"],
        "name": cat["name"],
        "price": store.cents_to_units(cat["price_cents"]),
        "per_user_limit": cat["per_user_limit"],
        "stock_left": stock,
        "stocked": stocked,
        "sale": {"open": cat["sale_open"], "starts_at": _iso(cat["starts_at"]), "ends_at": _iso(cat["ends_at"])},
        "on_sale": open_now and bool(stock),
        "stale": stale,
    }


def product_json(out: dict[str, Any]) -> dict[str, Any]:
    """A product_out() answer made JSON-safe, for a hand-built response."""
    sale = out["sale"]
    return {**out, "sale": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in sale.items()}}


# --- products
async def find_product(st: State, product_id: str, what: str = "reading the catalogue") -> dict[str, Any] | None:
    """A product's catalogue entry; `what` the request is doing names it in the 503 when MongoDB is down."""
    try:
        return await st.db.products.find_one({"_id": product_id})
    except PyMongoError:
        raise mongo_unavailable(what) from None


async def product_or_404(st: State, product_id: str) -> dict[str, Any]:
    doc = await find_product(st, product_id)
    if doc is None:
        raise unknown_product(product_id, "create it with POST /api/admin/products")
    return doc


async def read_product(st: State, product_id: str) -> dict[str, Any]:
    """One product with its live stock; counts a view of it."""
    try:
        cached, stock, stocked = await st.scripts.read(
            keys=[store.product_key(product_id), store.cache_key(product_id), store.VIEWS], args=[product_id]
        )
    except store.REDIS_DOWN:
        return await read_product_fallback(st, product_id)
    stock, stocked = int_or_none(stock), int_or_none(stocked)
    if cached:
        metrics.CACHE_HITS.inc()
        cat = json.loads(cached)
    else:
        metrics.CACHE_MISSES.inc()
        doc = await find_product(st, product_id)
        if doc is None:
            raise unknown_product(product_id)
        cat = catalogue_doc(doc)
        try:
            await st.redis.set(
                store.cache_key(product_id), store.dumps(cat), px=int(st.settings.cache_ttl_seconds * 1000)
            )
        except store.REDIS_DOWN:
            pass
    metrics.PRODUCT_VIEWS.labels(product_id).inc()
    st.last_stock[product_id] = (stock, stocked)
    out = product_out(cat, stock, stocked, stale=False)
    st.local[product_id] = (time.monotonic() + st.settings.local_cache_ttl_seconds, out)
    return out


async def read_product_fallback(st: State, product_id: str) -> dict[str, Any]:
    hit = st.local.get(product_id)
    if hit and hit[0] > time.monotonic():
        return {**hit[1], "stale": True}
    try:
        doc = await st.db.products.find_one({"_id": product_id})
    except PyMongoError:
        if hit:  # both stores down: an old answer beats none for a read
            return {**hit[1], "stale": True}
        raise mongo_unavailable("reading the catalogue") from None
    if doc is None:
        raise unknown_product(product_id)
    stock, stocked = st.last_stock.get(product_id, (None, None))
    out = product_out(catalogue_doc(doc), stock, stocked, stale=True)
    st.local[product_id] = (time.monotonic() + st.settings.local_cache_ttl_seconds, {**out, "stale": False})
    return out


async def list_catalogue(st: State) -> tuple[list[dict[str, Any]], bool]:
    """Catalogue docs (cached in Redis) and whether Redis was unreachable."""
    try:
        cached = await st.redis.get(store.CATALOGUE_CACHE)
    except store.REDIS_DOWN:
        if st.local_list and st.local_list[0] > time.monotonic():
            return st.local_list[1], True
        cached = None
        redis_down = True
    else:
        redis_down = False
    if cached:
        metrics.CACHE_HITS.inc()
        return json.loads(cached), redis_down
    metrics.CACHE_MISSES.inc()
    try:
        docs = [catalogue_doc(d) async for d in st.db.products.find({}).sort("_id", 1).limit(1000)]
    except PyMongoError:
        if st.local_list:
            return st.local_list[1], True
        raise mongo_unavailable("listing the catalogue") from None
    st.local_list = (time.monotonic() + st.settings.local_cache_ttl_seconds, docs)
    if not redis_down:
        try:
            await st.redis.set(store.CATALOGUE_CACHE, store.dumps(docs), px=int(st.settings.cache_ttl_seconds * 1000))
        except store.REDIS_DOWN:
            redis_down = True
    return docs, redis_down


async def product_stats(st: State, what: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The catalogue, each product's sale counters (admin stats, analytics) and the orders queued.

    Orders and revenue are counted by the buy script with the sale itself: live, exact, and no scan of
    the orders in MongoDB (`GET /api/admin/reconcile` checks MongoDB against them). The product list is
    the cached catalogue, as for GET /api/products: a poll during a sale must not scan MongoDB's products.
    """
    products, redis_down = await list_catalogue(st)
    if redis_down:
        raise redis_unavailable(what)
    try:
        pipe = st.redis.pipeline(transaction=False)
        for p in products:
            pipe.hmget(store.product_key(p["id"]), ["stock", "stocked", "orders", "revenue_cents"])
        pipe.hgetall(store.VIEWS)
        pipe.xlen(store.STREAM)
        *counters, views, queued = await pipe.execute()
    except store.REDIS_DOWN:
        raise redis_unavailable(what) from None
    rows = []
    for p, (stock, stocked, n_orders, revenue_cents) in zip(products, counters, strict=True):
        stock_i, stocked_i = int_or_none(stock), int_or_none(stocked)
        n_views = int(views.get(p["id"], 0))
        n_orders = int(n_orders or 0)
        rows.append(
            {
                "product_id": p["id"],
                "name": p["name"],
                "orders": n_orders,
                "units_sold": stocked_i - stock_i if stocked_i is not None and stock_i is not None else 0,
                "revenue": store.cents_to_units(int(revenue_cents or 0)),
                "stocked": stocked_i,
                "stock_left": stock_i,
                "sell_through": (
                    round((stocked_i - stock_i) / stocked_i, 4) if stocked_i and stock_i is not None else None
                ),
                "views": n_views,
                "conversion": round(n_orders / n_views, 4) if n_views else None,
            }
        )
    return products, rows, int(queued)


async def invalidate(st: State, product_id: str) -> None:
    """Drop the cached catalogue of a product after an admin write."""
    await st.redis.delete(store.cache_key(product_id), store.CATALOGUE_CACHE)
    st.local.pop(product_id, None)
    st.local_list = None


async def stock_of(st: State, product_id: str) -> tuple[int | None, int | None]:
    stock, stocked = await st.redis.hmget(store.product_key(product_id), ["stock", "stocked"])
    return int_or_none(stock), int_or_none(stocked)


async def insert_product(st: State, doc: dict[str, Any]) -> bool:
    """Insert a catalogue entry; False when its id is already taken."""
    try:
        await st.db.products.insert_one(doc)
    except DuplicateKeyError:
        return False
    except PyMongoError:
        raise mongo_unavailable("creating a product") from None
    return True


async def set_sale(st: State, product_id: str, is_open: bool, starts: int, ends: int) -> dict[str, Any]:
    """Open or close a product's sale in the catalogue; the updated entry."""
    try:
        doc = await st.db.products.find_one_and_update(
            {"_id": product_id},
            {"$set": {"sale_open": is_open, "starts_at": starts, "ends_at": ends}},
            return_document=True,
        )
    except PyMongoError:
        raise mongo_unavailable("changing the sale") from None
    if doc is None:  # deleted since the caller looked it up
        raise unknown_product(product_id)
    return doc


# --- orders
def order_out(order_id: str, user_id: str, o: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """One OrderOut from a Redis list entry or a MongoDB document (they share the cents fields)."""
    return {
        "order_id": order_id,
        "user_id": user_id,
        "product_id": o["product_id"],
        "quantity": o["quantity"],
        "unit_price": store.cents_to_units(o["unit_price_cents"]),
        "total": store.cents_to_units(o["total_cents"]),
        "created_at": created_at,
    }


async def orders_from_mongo(st: State, user_id: str, limit: int) -> dict[str, Any]:
    """The orders endpoint's fallback while Redis is down: persisted orders only, and a scan on FerretDB."""
    try:
        docs = [d async for d in st.db.orders.find({"user_id": user_id}).sort("created_at", -1).limit(limit)]
    except PyMongoError:
        raise mongo_unavailable("listing orders") from None
    return {
        "user_id": user_id,
        "source": "mongodb",
        "orders": [order_out(d["_id"], user_id, d, d["created_at"]) for d in docs],
    }
