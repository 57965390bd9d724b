"""ScaleMart's data, written straight in the layout the app uses: the key names come from the
app's own `scalemart.store` and the order documents from the worker's `order_doc`, so a change
in the app shows up here. Everything about the layout is in this file."""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
import redis

APP_SRC = Path(__file__).resolve().parents[2] / "app"
if str(APP_SRC) not in sys.path:
    sys.path.insert(0, str(APP_SRC))

from scalemart import store  # noqa: E402
from scalemart.worker import order_doc  # noqa: E402

IDEMPOTENCY_TTL = 86400


def idem_key(user: str, key: str) -> str:
    # built inside the app's BUY_LUA (`P .. 'idem:' .. user .. ':' .. key`), which has no Python helper
    return f"{store.PREFIX}idem:{user}:{key}"


@dataclass
class Seeded:
    products: dict[str, int]
    persisted: int
    queued: int


def seed(
    r: redis.Redis, db: Any, products: int, orders: int, queued: int, seed_value: int = 7, stock_each: int | None = None
) -> Seeded:
    """Create products and orders like the API and the worker would; `queued` orders stay in the stream."""
    rng = random.Random(seed_value)
    total = orders + queued
    stock_each = stock_each or max(100, (total * 3) // max(products, 1) + 10)
    ids = [f"p-{i:03d}" for i in range(products)]
    now = datetime.now(UTC)
    pipe = r.pipeline(transaction=False)
    for i, pid in enumerate(ids):
        price = 100 + 37 * i
        pipe.hset(
            store.product_key(pid),
            mapping={
                "stock": stock_each,
                "stocked": stock_each,
                "price_cents": price,
                "per_user_limit": 1000,
                "open": 1,
                "starts_at": 0,
                "ends_at": 0,
            },
        )
        pipe.sadd(store.PRODUCTS, pid)
    pipe.execute()
    db.products.insert_many(
        [
            {
                "_id": pid,
                "name": f"Product {pid}",
                "price_cents": 100 + 37 * i,
                "per_user_limit": 1000,
                "sale_open": True,
                "starts_at": 0,
                "ends_at": 0,
                "initial_stock": stock_each,
                "created_at": now,
            }
            for i, pid in enumerate(ids)
        ]
    )
    try:
        r.xgroup_create(store.STREAM, store.GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    docs: list[dict[str, Any]] = []
    stock = dict.fromkeys(ids, stock_each)
    t0_ms = int(time.time() * 1000) - total * 10
    pipe = r.pipeline(transaction=False)
    for n in range(total):
        pid = rng.choice(ids)
        qty = rng.randint(1, 3)
        qty = min(qty, stock[pid]) or 0
        if not qty:
            continue
        stock[pid] -= qty
        user = f"user-{rng.randrange(orders // 3 + 10)}"
        key = f"key-{n:08d}"
        order_id = f"ord-{n:08d}"
        price = 100 + 37 * ids.index(pid)
        fields = {
            "order_id": order_id,
            "user_id": user,
            "product_id": pid,
            "quantity": str(qty),
            "unit_price_cents": str(price),
            "total_cents": str(price * qty),
            "created_at_ms": str(t0_ms + n * 10),
            "idempotency_key": key,
        }
        pipe.hincrby(store.product_key(pid), "stock", -qty)
        pipe.hincrby(store.bought_key(pid), user, qty)
        pipe.set(idem_key(user, key), json.dumps({"result": "success", "order_id": order_id}), ex=IDEMPOTENCY_TTL)
        if n < orders:
            docs.append(order_doc(f"{t0_ms + n * 10}-0", fields))
        else:
            pipe.xadd(store.STREAM, fields)  # type: ignore[arg-type]
        if len(pipe) >= 3000:
            pipe.execute()
        if len(docs) >= 10_000:
            db.orders.insert_many(docs, ordered=False)
            docs = []
    pipe.execute()
    if docs:
        db.orders.insert_many(docs, ordered=False)
    db.orders.create_index([("user_id", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)])
    return Seeded(dict.fromkeys(ids, stock_each), orders, queued)


def redis_state(r: redis.Redis) -> dict[str, Any]:
    """Every key's type, value and whether it expires: what "identical" means for Redis."""
    out: dict[str, Any] = {}
    for key in sorted(r.scan_iter(count=1000)):
        kind = r.type(key)
        value: Any
        if kind == "string":
            value = r.get(key)
        elif kind == "hash":
            value = r.hgetall(key)
        elif kind == "set":
            value = sorted(r.smembers(key))
        elif kind == "zset":
            value = r.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = r.lrange(key, 0, -1)
        elif kind == "stream":
            groups = [{k: g[k] for k in ("name", "pending", "last-delivered-id")} for g in r.xinfo_groups(key)]
            value = {"entries": r.xrange(key), "groups": groups}
        else:
            raise AssertionError(f"{key!r}: unexpected type {kind!r}")
        out[key] = (kind, value, r.ttl(key) > 0)
    return out


def mongo_state(db: Any) -> dict[str, Any]:
    """Every document and every index of every collection."""
    return {
        name: (
            list(db[name].find().sort("_id", 1)),
            sorted((i["name"], list(i["key"].items()), bool(i.get("unique"))) for i in db[name].list_indexes()),
        )
        for name in sorted(db.list_collection_names())
    }


def stock(r: redis.Redis) -> dict[str, int]:
    pids = sorted(p.decode() if isinstance(p, bytes) else p for p in r.smembers(store.PRODUCTS))
    return {pid: int(r.hget(store.product_key(pid), "stock") or 0) for pid in pids}
