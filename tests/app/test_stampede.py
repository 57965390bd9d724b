"""Flash-sale stampedes: thousands of concurrent buyers never oversell and never lose an order."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from typing import Any

import httpx

from tests.app.conftest import ADMIN_TOKEN, AppServer, as_buyer, create_product, wait_drained

BUYERS = 2000


retries: Counter[str] = Counter()


async def fire(url: str, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Send every body at once, one connection per buyer.

    A 503 or a transport error is retried with the same idempotency key, as the API asks clients to:
    on a busy box a Redis call can time out after the script ran, and the retry must return that answer.
    """
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        start = asyncio.Event()

        async def one(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            headers = as_buyer(body["user_id"])  # a token per simulated buyer, minted before the start
            await start.wait()
            for attempt in range(8):
                try:
                    r = await client.post("/api/buy", json=body, headers=headers)
                    if r.status_code != 503 or attempt == 7:
                        return r.status_code, r.json()
                    retries["503"] += 1
                except httpx.TransportError:
                    if attempt == 7:
                        raise
                    retries["transport"] += 1
                await asyncio.sleep(0.2 * (attempt + 1))
            raise AssertionError("unreachable")

        tasks = [asyncio.create_task(one(b)) for b in bodies]
        await asyncio.sleep(0)
        start.set()
        t0 = time.monotonic()
        out = await asyncio.gather(*tasks)
        print(f"{len(bodies)} buyers answered in {time.monotonic() - t0:.1f} s; retries: {dict(retries)}")
        return out


def mongo_orders(server: AppServer) -> list[dict[str, Any]]:
    return list(server.env.mongo().orders.find({}))


def test_2000_buyers_for_100_units_sell_exactly_100(shared_app: AppServer) -> None:
    with shared_app.client(admin=True) as c:
        create_product(c, "stampede", stock=100, per_user_limit=1)
    bodies = [
        {"user_id": f"buyer-{i}", "product_id": "stampede", "quantity": 1, "idempotency_key": f"stampede-{i:06d}"}
        for i in range(BUYERS)
    ]
    results = asyncio.run(fire(shared_app.url, bodies))
    statuses = Counter(s for s, _ in results)
    assert statuses == {201: 100, 409: BUYERS - 100}, statuses
    assert {b["error"] for s, b in results if s == 409} == {"out_of_stock"}
    order_ids = {b["order_id"] for s, b in results if s == 201}
    assert len(order_ids) == 100

    wait_drained(shared_app.env, expected_orders=100)
    with shared_app.client() as c:
        assert c.get("/api/products/stampede").json()["stock_left"] == 0
    orders = [o for o in mongo_orders(shared_app) if o["product_id"] == "stampede"]
    assert len(orders) == 100 and {o["_id"] for o in orders} == order_ids
    rec = shared_app.env.run_cli("reconcile", "--require-drained")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "stampede" in rec.stdout and "clean" in rec.stdout


def test_per_user_limit_and_repeated_idempotency_keys_under_stampede(shared_app: AppServer) -> None:
    # 20 users x limit 5 == 100 units: every user ends with exactly 5, however the requests interleave.
    users, per_user_requests, distinct_keys = 20, BUYERS // 20, 60
    with shared_app.client(admin=True) as c:
        create_product(c, "stampede-limit", stock=100, per_user_limit=5, price=3.5)
    rng = random.Random(7)
    bodies: list[dict[str, Any]] = []
    for u in range(users):
        keys = [f"u{u:02d}-key-{k:04d}" for k in range(distinct_keys)]
        keys += [rng.choice(keys) for _ in range(per_user_requests - distinct_keys)]  # replays
        bodies += [
            {"user_id": f"limit-user-{u}", "product_id": "stampede-limit", "quantity": 1, "idempotency_key": k}
            for k in keys
        ]
    rng.shuffle(bodies)
    assert len(bodies) == BUYERS
    results = asyncio.run(fire(shared_app.url, bodies))
    statuses = Counter(s for s, _ in results)
    assert set(statuses) <= {201, 409}, statuses  # no 503 left after the retries, never a 500

    answers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for body, (status, out) in zip(bodies, results, strict=True):
        answers[(body["user_id"], body["idempotency_key"])].add(f"{status}:{sorted(out.items())}")
    assert all(len(a) == 1 for a in answers.values()), "a replayed key got a different answer than the first"

    successes = {out["order_id"]: out["user_id"] for status, out in results if status == 201}
    assert len(successes) == 100
    assert Counter(successes.values()) == {f"limit-user-{u}": 5 for u in range(users)}
    errors = Counter(out["error"] for status, out in results if status == 409)
    # once stock is gone the stock check answers first, so late requests may read out_of_stock
    assert "limit_exceeded" in errors and set(errors) <= {"limit_exceeded", "out_of_stock"}, errors

    wait_drained(shared_app.env)
    with shared_app.client() as c:
        assert c.get("/api/products/stampede-limit").json()["stock_left"] == 0
    orders = [o for o in mongo_orders(shared_app) if o["product_id"] == "stampede-limit"]
    assert len(orders) == 100 and {o["_id"] for o in orders} == set(successes)
    assert sum(o["total_cents"] for o in orders) == 100 * 350
    rec = shared_app.env.run_cli("reconcile", "--require-drained")
    assert rec.returncode == 0, rec.stdout + rec.stderr

    with shared_app.client() as c:
        m = c.get("/metrics").text
    assert 'scalemart_purchase_attempts_total{product="stampede-limit",result="duplicate"}' in m
    assert ADMIN_TOKEN not in m
