"""Purchases coalesced into one script call keep their own, independent outcomes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.app.conftest import AppServer, create_product


def test_mixed_purchases_in_one_batch_each_get_their_own_answer(make_env: Any, running: list[Any]) -> None:
    env = make_env(rate_limit_requests=1000)
    server = AppServer(env, workers=1).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "batch-a", stock=3, per_user_limit=2, price=1.25)
        create_product(c, "batch-closed", stock=5, open_sale=False)

    from scalemart import store

    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        r = store.redis_client(env.vars["SCALEMART_REDIS_URL"])
        scripts = store.register_scripts(r)
        batcher = store.BuyBatcher(scripts.buy, idem_ttl=600, rate_limit=0, rate_window=10, kept=10, history_ttl=0)
        calls = [
            ("u1", "batch-a", 1, "o1", "key-0001"),
            ("u1", "batch-a", 1, "o2", "key-0002"),
            ("u1", "batch-a", 1, "o3", "key-0003"),  # over u1's limit of 2
            ("u1", "batch-a", 1, "o4", "key-0001"),  # replay of the first
            ("u2", "batch-a", 1, "o5", "key-0001"),  # same key, other user: a new purchase
            ("u3", "batch-a", 1, "o6", "key-0006"),  # stock is gone by now
            ("u3", "ghost", 1, "o7", "key-0007"),
            ("u3", "batch-closed", 1, "o8", "key-0008"),
        ]
        out = await asyncio.gather(*(batcher.buy(*call, client="127.0.0.1") for call in calls))
        await r.aclose()
        return [(kind, json.loads(raw)) for kind, raw in out]

    results = asyncio.run(scenario())
    summary = [(kind, res["result"], res.get("order_id")) for kind, res in results]
    assert summary == [
        ("new", "success", "o1"),
        ("new", "success", "o2"),
        ("new", "limit_exceeded", None),
        ("replay", "success", "o1"),
        ("new", "success", "o5"),
        ("new", "out_of_stock", None),
        ("new", "unknown_product", None),
        ("new", "closed", None),
    ]
    assert [res.get("stock_left") for _, res in results[:3]] == [2, 1, 1]
    assert results[0][1]["total_cents"] == 125
