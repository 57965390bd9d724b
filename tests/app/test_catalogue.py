"""`GET /api/products`, `GET /api/products/{product_id}`, and the rate limiter that guards them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.app.conftest import AppServer, assert_error, buy, create_product


def test_list_products_shows_created_products_with_stock(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "list-a", stock=3)
    create_product(admin, "list-b", stock=4, open_sale=False)
    r = anon.get("/api/products")
    assert r.status_code == 200
    by_id = {p["id"]: p for p in r.json()["products"]}
    assert by_id["list-a"]["stock_left"] == 3 and by_id["list-a"]["on_sale"] is True
    assert by_id["list-b"]["stock_left"] == 4 and by_id["list-b"]["on_sale"] is False


def test_get_product_returns_catalogue_and_live_stock(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "get-a", stock=7, price=12.5, per_user_limit=3)
    r = anon.get("/api/products/get-a")
    assert r.status_code == 200
    p = r.json()
    assert (p["name"], p["price"], p["stock_left"], p["stocked"]) == ("Product get-a", 12.5, 7, 7)
    assert p["per_user_limit"] == 3
    assert buy(anon, "get-a", qty=2).status_code == 201
    assert anon.get("/api/products/get-a").json()["stock_left"] == 5  # stock is never served from the cache


def test_get_unknown_product_is_404_naming_product_id(anon: httpx.Client) -> None:
    assert_error(anon.get("/api/products/no-such-thing"), 404, "unknown_product", "product_id")


def test_get_product_with_invalid_id_is_422_naming_product_id(anon: httpx.Client) -> None:
    assert_error(anon.get("/api/products/Not_Valid!"), 422, "validation_error", "product_id")


def test_rate_limiter_answers_429_with_retry_after_and_counts(make_env: Any, running: list[Any]) -> None:
    env = make_env(rate_limit_requests=5, rate_limit_window_seconds=30)
    server = AppServer(env, workers=1).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "rl-a", stock=100, per_user_limit=100)
        statuses = [c.get("/api/products/rl-a").status_code for _ in range(6)]
        assert statuses.count(429) >= 1, statuses
        r = c.get("/api/products/rl-a")
        assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 30
        r = buy(c, "rl-a")  # the buy script applies the same per-client budget
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        assert c.get("/health/live").status_code == 200  # probes are never limited
        m = c.get("/metrics").text
        count = next(
            float(line.split()[-1]) for line in m.splitlines() if line.startswith("scalemart_rate_limited_total")
        )
        assert count >= 3
