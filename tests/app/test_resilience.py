"""Crashes and outages: a killed worker loses and duplicates nothing; Redis down degrades, never oversells."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pymongo
import redis

from tests.app.conftest import (
    AppServer,
    Env,
    FerretDB,
    RedisServer,
    WorkerProc,
    as_buyer,
    create_product,
    wait_drained,
)


def orders_collection(env: Env) -> Any:
    v = env.vars
    return pymongo.MongoClient(v["SCALEMART_MONGO_URL"])[v["SCALEMART_MONGO_DB"]].orders


async def buy_many(url: str, product: str, n: int) -> list[str]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:

        async def one(i: int) -> str:
            r = await c.post(
                "/api/buy",
                json={"user_id": f"u{i}", "product_id": product, "quantity": 1, "idempotency_key": f"crash-{i:06d}"},
                headers=as_buyer(f"u{i}"),
            )
            assert r.status_code == 201, r.text
            return str(r.json()["order_id"])

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_worker_killed_mid_drain_and_restarted_loses_and_duplicates_nothing(make_env: Any, running: list[Any]) -> None:
    # Small batches make the drain long enough to kill the worker in the middle of it.
    env = make_env(worker_batch_size=5, worker_claim_idle_seconds=1)
    server = AppServer(env).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "crash-a", stock=1000, per_user_limit=1)
    total = 600
    order_ids = asyncio.run(buy_many(server.url, "crash-a", total))  # no worker yet: all orders queued
    orders = orders_collection(env)
    assert orders.count_documents({}) == 0

    kills = 0
    for _ in range(2):  # kill twice at different points of the drain
        worker = WorkerProc(env).start()
        running.append(worker)
        before = orders.count_documents({})
        deadline = time.monotonic() + 60
        while orders.count_documents({}) < before + 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.kill()
        kills += 1
        persisted = orders.count_documents({})
        assert persisted < total, "the drain finished before the kill; lower worker_batch_size"
    r = redis.Redis.from_url(env.vars["SCALEMART_REDIS_URL"])
    assert r.xlen("sm:orders") > 0

    running.append(WorkerProc(env).start())
    wait_drained(env, expected_orders=total)
    ids = [d["_id"] for d in orders.find({}, {"_id": 1})]
    assert len(ids) == total == len(set(ids)) and set(ids) == set(order_ids)
    rec = env.run_cli("reconcile", "--require-drained")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert kills == 2


def test_orders_persisted_but_not_acknowledged_are_not_duplicated(make_env: Any, running: list[Any]) -> None:
    # The narrowest crash window: MongoDB has the order, the stream entry is still pending.
    env = make_env()
    server = AppServer(env, workers=1).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "crash-b", stock=100, per_user_limit=1)
    order_ids = asyncio.run(buy_many(server.url, "crash-b", 20))

    from scalemart.worker import Worker

    half_done = Worker(env.settings())
    half_done.ensure_group()
    r = half_done.redis
    entries = r.xreadgroup("persisters", env.vars["SCALEMART_WORKER_NAME"], {"sm:orders": ">"}, count=10)[0][1]
    from scalemart.worker import order_doc

    orders_collection(env).insert_many([order_doc(eid, f) for eid, f in entries])  # then "crash": no ack
    assert r.xpending("sm:orders", "persisters")["pending"] == 10

    running.append(WorkerProc(env).start())
    wait_drained(env, expected_orders=20)
    ids = [d["_id"] for d in orders_collection(env).find({}, {"_id": 1})]
    assert sorted(ids) == sorted(order_ids)
    assert r.xpending("sm:orders", "persisters")["pending"] == 0


def test_redis_down_reads_served_purchases_503_json_then_resume(
    ferretdb: FerretDB, tmp_path: Path, running: list[Any]
) -> None:
    own_redis = RedisServer(tmp_path)  # this test stops Redis: its own instance
    own_redis.start()
    running.append(own_redis)
    env = Env(own_redis.url, ferretdb.url, tmp_path, local_cache_ttl_seconds=2)
    server = AppServer(env).start()
    running.append(server)
    running.append(WorkerProc(env).start())
    admin, c = server.client(admin=True), server.client()
    create_product(admin, "outage-a", stock=10, price=5)
    assert (
        c.post(
            "/api/buy",
            json={"user_id": "u1", "product_id": "outage-a", "quantity": 1, "idempotency_key": "before-outage-1"},
            headers=as_buyer("u1"),
        ).status_code
        == 201
    )
    for _ in range(4):  # warm both uvicorn workers' in-process caches
        assert c.get("/api/products/outage-a").status_code == 200
        assert c.get("/api/products").status_code == 200
    wait_drained(env, expected_orders=1)

    own_redis.stop()
    r = c.get("/api/users/me/orders", headers=as_buyer("u1"))  # persisted orders, from MongoDB
    assert r.status_code == 200 and r.json()["source"] == "mongodb", r.text
    assert [o["product_id"] for o in r.json()["orders"]] == ["outage-a"]
    for _ in range(4):
        r = c.get("/api/products/outage-a")
        assert r.status_code == 200, r.text
        assert r.json()["stale"] is True and r.json()["name"] == "Product outage-a"
        lst = c.get("/api/products")
        assert lst.status_code == 200 and lst.json()["stale"] is True
    time.sleep(2.5)  # past the in-process TTL: reads fall back to the MongoDB catalogue
    r = c.get("/api/products/outage-a")
    assert r.status_code == 200 and r.json()["stale"] is True
    for i in range(4):
        r = c.post(
            "/api/buy",
            json={"user_id": "u2", "product_id": "outage-a", "quantity": 1, "idempotency_key": f"during-outage-{i}"},
            headers=as_buyer("u2"),
        )
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == "stock_store_unavailable" and r.headers["Retry-After"]
    ready = c.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unreachable")
    assert c.get("/health/live").status_code == 200

    own_redis.start()  # same port, AOF on: the stock survives
    deadline = time.monotonic() + 20
    while c.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    r = c.post(
        "/api/buy",
        json={"user_id": "u2", "product_id": "outage-a", "quantity": 1, "idempotency_key": "during-outage-0"},
        headers=as_buyer("u2"),
    )  # the client's retry of a 503
    assert r.status_code == 201, r.text
    assert r.json()["stock_left"] == 8
    for _ in range(4):
        assert c.get("/api/products/outage-a").json()["stale"] is False
    wait_drained(env, expected_orders=2)
    rec = env.run_cli("reconcile", "--require-drained")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert 'status="500"' not in c.get("/metrics").text


def test_reconcile_reports_a_mismatch_and_exits_nonzero(make_env: Any, running: list[Any]) -> None:
    env = make_env()
    server = AppServer(env, workers=1).start()
    running.append(server)
    running.append(WorkerProc(env).start())
    with server.client(admin=True) as c:
        create_product(c, "rec-a", stock=10)
        c.post(
            "/api/buy",
            json={"user_id": "u1", "product_id": "rec-a", "quantity": 2, "idempotency_key": uuid.uuid4().hex},
            headers=as_buyer("u1"),
        )
    wait_drained(env, expected_orders=1)
    ok = env.run_cli("reconcile")
    assert ok.returncode == 0 and "rec-a" in ok.stdout
    orders_collection(env).delete_many({"product_id": "rec-a"})  # an order lost behind the API's back
    bad = env.run_cli("reconcile")
    assert bad.returncode == 1
    assert "MISMATCH" in bad.stdout and "taken 2 != persisted 0" in bad.stdout
