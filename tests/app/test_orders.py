"""A buyer's orders (`GET /api/users/me/orders`; any user's, admin only, at `/api/users/{user_id}/orders`): from
Redis at once, persisted later, newest first."""

from __future__ import annotations

from typing import Any

import httpx

from tests.app.conftest import AppServer, as_buyer, assert_error, buy, create_product, wait_drained


def test_user_orders_lists_accepted_orders_newest_first_before_and_after_persisting(
    admin: httpx.Client, anon: httpx.Client, shared_app: AppServer
) -> None:
    create_product(admin, "orders-a", stock=5, price=3)
    ids = [buy(anon, "orders-a", user="dave", qty=q).json()["order_id"] for q in (1, 2)]
    r = anon.get("/api/users/me/orders", headers=as_buyer("dave"))  # listed from Redis at once, persisted or not
    assert r.status_code == 200 and r.json()["source"] == "redis"
    assert [(o["order_id"], o["quantity"], o["total"]) for o in r.json()["orders"]] == [
        (ids[1], 2, 6.0),
        (ids[0], 1, 3.0),
    ]
    wait_drained(shared_app.env)
    persisted = shared_app.env.mongo().orders.find({"user_id": "dave"})
    listed = anon.get("/api/users/me/orders", params={"limit": 1}, headers=as_buyer("dave")).json()["orders"]
    assert [o["order_id"] for o in listed] == [ids[1]]
    assert admin.get("/api/users/dave/orders").json()["orders"] == r.json()["orders"], "an admin reads the same"
    assert {d["_id"]: d["total_cents"] for d in persisted} == {ids[0]: 300, ids[1]: 600}


def test_user_orders_keep_only_the_newest_per_setting(make_env: Any, running: list[Any]) -> None:
    env = make_env(user_orders_kept=2)
    server = AppServer(env, workers=1).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "kept-a", stock=10, per_user_limit=10)
        ids = [buy(c, "kept-a", user="hana").json()["order_id"] for _ in range(3)]
        assert [o["order_id"] for o in c.get("/api/users/hana/orders").json()["orders"]] == ids[:0:-1]


def test_user_orders_of_user_without_orders_is_empty(anon: httpx.Client) -> None:
    assert anon.get("/api/users/me/orders", headers=as_buyer("nobody-yet")).json() == {
        "user_id": "nobody-yet",
        "source": "redis",
        "orders": [],
    }


def test_user_orders_bad_user_id_or_limit_is_422(admin: httpx.Client, anon: httpx.Client) -> None:
    assert_error(admin.get("/api/users/bad:user/orders"), 422, "validation_error", "user_id")
    assert_error(
        anon.get("/api/users/me/orders", params={"limit": 0}, headers=as_buyer("dave")),
        422,
        "validation_error",
        "limit",
    )
