"""Every route: its happy path, its 4xx cases and its auth cases, against the real server."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.app.conftest import AppServer, WorkerProc, create_product, wait_drained


def buy(client: httpx.Client, product: str, user: str = "alice", qty: int = 1,
        key: str | None = None) -> httpx.Response:
    return client.post("/api/buy", json={"user_id": user, "product_id": product, "quantity": qty,
                                         "idempotency_key": key or uuid.uuid4().hex})


def assert_error(r: httpx.Response, status: int, error: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == error, body
    assert body["message"]
    if field is not None:
        assert body["field"] == field, body
        assert re.search(rf"\b{re.escape(field)}\b", body["message"]), f"the message does not name {field}: {body}"
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def admin(shared_app: AppServer) -> httpx.Client:
    return shared_app.client(admin=True)


@pytest.fixture(scope="module")
def anon(shared_app: AppServer) -> httpx.Client:
    return shared_app.client()


# --- health
def test_liveness_answers_without_dependencies(anon: httpx.Client) -> None:
    r = anon.get("/health/live")
    assert r.status_code == 200 and r.json()["status"] == "live"


def test_readiness_checks_redis_mongodb_and_worker_lag(anon: httpx.Client) -> None:
    r = anon.get("/health/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"redis": "ok", "mongodb": "ok", "worker_lag": "ok"}


def test_readiness_is_503_naming_worker_lag_until_the_queue_drains(make_env: Any, running: list[Any]) -> None:
    env = make_env(ready_max_queue_age_seconds=1)
    server = AppServer(env, workers=1).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "lag-a")
        assert buy(c, "lag-a").status_code == 201  # no worker yet: the order waits in the queue
        time.sleep(1.5)
        r = c.get("/health/ready")
        assert r.status_code == 503, r.text
        checks = r.json()["checks"]
        assert (r.json()["status"], checks["redis"], checks["mongodb"]) == ("not_ready", "ok", "ok"), r.text
        assert checks["worker_lag"].startswith("oldest queued order is"), checks
        running.append(WorkerProc(env).start())
        wait_drained(env, expected_orders=1)
        r = c.get("/health/ready")
        assert r.status_code == 200 and r.json()["checks"]["worker_lag"] == "ok", r.text


# --- catalogue
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


# --- buy
def test_buy_takes_stock_and_returns_the_order(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "buy-a", stock=5, price=2.5)
    r = buy(anon, "buy-a", qty=2)
    assert r.status_code == 201, r.text
    o = r.json()
    assert (o["status"], o["quantity"], o["unit_price"], o["total"], o["stock_left"]) == ("accepted", 2, 2.5, 5.0, 3)
    assert len(o["order_id"]) == 32


def test_buy_replay_with_same_idempotency_key_returns_first_answer(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "buy-replay", stock=5)
    first = buy(anon, "buy-replay", key="replay-key-1")
    again = buy(anon, "buy-replay", key="replay-key-1")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert anon.get("/api/products/buy-replay").json()["stock_left"] == 4


def test_buy_reusing_key_for_other_quantity_is_409_naming_idempotency_key(admin: httpx.Client,
                                                                          anon: httpx.Client) -> None:
    create_product(admin, "buy-reuse", stock=5)
    assert buy(anon, "buy-reuse", key="reuse-key-1").status_code == 201
    assert_error(buy(anon, "buy-reuse", qty=2, key="reuse-key-1"), 409, "idempotency_key_reused", "idempotency_key")


def test_buy_unknown_product_is_404(anon: httpx.Client) -> None:
    assert_error(buy(anon, "ghost-product"), 404, "unknown_product", "product_id")


def test_buy_more_than_stock_is_409_out_of_stock(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "buy-oos", stock=1, per_user_limit=10)
    body = assert_error(buy(anon, "buy-oos", qty=2), 409, "out_of_stock", "quantity")
    assert body["details"]["stock_left"] == 1


def test_buy_over_per_user_limit_is_409_limit_exceeded(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "buy-limit", stock=50, per_user_limit=3)
    assert buy(anon, "buy-limit", user="bob", qty=2).status_code == 201
    body = assert_error(buy(anon, "buy-limit", user="bob", qty=2), 409, "limit_exceeded", "quantity")
    assert body["details"] == {"already_bought": 2, "per_user_limit": 3, "stock_left": 48}
    assert buy(anon, "buy-limit", user="carol", qty=2).status_code == 201


def test_buy_when_sale_closed_is_409_sale_closed(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "buy-closed", stock=5, open_sale=False)
    assert_error(buy(anon, "buy-closed"), 409, "sale_closed", "product_id")


@pytest.mark.parametrize(("field", "value"), [("quantity", 0), ("quantity", 101), ("quantity", "2"),
                                              ("quantity", 1.5), ("user_id", ""), ("user_id", "a:b"),
                                              ("product_id", "UPPER"), ("idempotency_key", "short")])
def test_buy_bad_field_is_422_naming_the_field(anon: httpx.Client, field: str, value: Any) -> None:
    body = {"user_id": "alice", "product_id": "buy-a", "quantity": 1, "idempotency_key": uuid.uuid4().hex, field: value}
    assert_error(anon.post("/api/buy", json=body), 422, "validation_error", field)


def test_buy_missing_field_is_422_saying_required(anon: httpx.Client) -> None:
    body = assert_error(anon.post("/api/buy", json={"user_id": "alice", "product_id": "buy-a", "quantity": 1}),
                        422, "validation_error", "idempotency_key")
    assert "required" in body["message"]


def test_buy_unknown_field_is_422(anon: httpx.Client) -> None:
    body = {"user_id": "alice", "product_id": "buy-a", "quantity": 1, "idempotency_key": uuid.uuid4().hex, "px": 1}
    assert_error(anon.post("/api/buy", json=body), 422, "validation_error", "px")


# --- orders
def test_user_orders_lists_accepted_orders_newest_first_before_and_after_persisting(
        admin: httpx.Client, anon: httpx.Client, shared_app: AppServer) -> None:
    create_product(admin, "orders-a", stock=5, price=3)
    ids = [buy(anon, "orders-a", user="dave", qty=q).json()["order_id"] for q in (1, 2)]
    r = anon.get("/api/users/dave/orders")  # listed from Redis at once, persisted or not
    assert r.status_code == 200 and r.json()["source"] == "redis"
    assert [(o["order_id"], o["quantity"], o["total"]) for o in r.json()["orders"]] == [(ids[1], 2, 6.0),
                                                                                         (ids[0], 1, 3.0)]
    wait_drained(shared_app.env)
    persisted = shared_app.env.mongo().orders.find({"user_id": "dave"})
    listed = anon.get("/api/users/dave/orders", params={"limit": 1}).json()["orders"]
    assert [o["order_id"] for o in listed] == [ids[1]]
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
    assert anon.get("/api/users/nobody-yet/orders").json() == {"user_id": "nobody-yet", "source": "redis",
                                                                "orders": []}


def test_user_orders_bad_user_id_or_limit_is_422(anon: httpx.Client) -> None:
    assert_error(anon.get("/api/users/bad:user/orders"), 422, "validation_error", "user_id")
    assert_error(anon.get("/api/users/dave/orders", params={"limit": 0}), 422, "validation_error", "limit")


# --- admin: auth
ADMIN_CALLS = [("POST", "/api/admin/products", {"id": "x", "name": "x", "price": 1, "stock": 1}),
               ("POST", "/api/admin/products/x/restock", {"quantity": 1}),
               ("POST", "/api/admin/products/x/sale", {"action": "open"}),
               ("GET", "/api/admin/stats", None), ("GET", "/api/admin/reconcile", None)]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_without_credential_is_401_naming_authorization(anon: httpx.Client, method: str, path: str,
                                                              body: Any) -> None:
    r = anon.request(method, path, json=body)
    assert_error(r, 401, "missing_credentials", "Authorization")
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_with_wrong_credential_is_401(anon: httpx.Client, method: str, path: str, body: Any) -> None:
    for header in ("Bearer wrong-token-value", "Basic YWRtaW46YWRtaW4=", "Bearer ünïcode"):
        r = anon.request(method, path, json=body, headers={b"Authorization": header.encode()})
        assert_error(r, 401, "invalid_credentials", "Authorization")


@pytest.mark.parametrize("path", ["/api/buy", *(path for method, path, _ in ADMIN_CALLS if method == "POST")])
def test_post_with_malformed_json_is_400_naming_body(admin: httpx.Client, path: str) -> None:
    r = admin.post(path, content=b'{"quantity": 1,', headers={"content-type": "application/json"})
    assert_error(r, 400, "malformed_json", "body")


# --- admin: products
def test_create_product_twice_is_409_naming_id(admin: httpx.Client) -> None:
    create_product(admin, "dup-a")
    r = admin.post("/api/admin/products", json={"id": "dup-a", "name": "again", "price": 1, "stock": 1})
    assert_error(r, 409, "product_exists", "id")


@pytest.mark.parametrize(("field", "value"), [("id", "Bad Id"), ("price", 0), ("price", -1), ("price", 0.001),
                                              ("stock", -1), ("stock", "5"), ("name", ""), ("name", "a\nb"),
                                              ("per_user_limit", 0)])
def test_create_product_bad_field_is_422_naming_the_field(admin: httpx.Client, field: str, value: Any) -> None:
    body = {"id": "bad-create", "name": "n", "price": 1.0, "stock": 1, field: value}
    assert_error(admin.post("/api/admin/products", json=body), 422, "validation_error", field)


def test_create_product_sale_window_must_be_ordered(admin: httpx.Client) -> None:
    body = {"id": "bad-window", "name": "n", "price": 1.0, "stock": 1, "starts_at": "2030-01-02T00:00:00Z",
            "ends_at": "2030-01-01T00:00:00Z"}
    body_out = assert_error(admin.post("/api/admin/products", json=body), 422, "validation_error")
    assert "ends_at" in body_out["message"]


def test_restock_adds_units(admin: httpx.Client) -> None:
    create_product(admin, "restock-a", stock=2)
    r = admin.post("/api/admin/products/restock-a/restock", json={"quantity": 5})
    assert r.status_code == 200, r.text
    assert (r.json()["stock_left"], r.json()["stocked"]) == (7, 7)


def test_restock_unknown_product_is_404_and_bad_quantity_422(admin: httpx.Client) -> None:
    assert_error(admin.post("/api/admin/products/ghost/restock", json={"quantity": 5}), 404, "unknown_product",
                 "product_id")
    create_product(admin, "restock-b")
    assert_error(admin.post("/api/admin/products/restock-b/restock", json={"quantity": 0}), 422,
                 "validation_error", "quantity")


def test_sale_open_and_close_gate_purchases(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "sale-a", stock=5, open_sale=False)
    assert buy(anon, "sale-a").status_code == 409
    r = admin.post("/api/admin/products/sale-a/sale", json={"action": "open"})
    assert r.status_code == 200 and r.json()["sale"]["open"] is True
    assert buy(anon, "sale-a").status_code == 201
    assert admin.post("/api/admin/products/sale-a/sale", json={"action": "close"}).json()["on_sale"] is False
    assert_error(buy(anon, "sale-a"), 409, "sale_closed", "product_id")


def test_sale_window_in_the_future_keeps_sale_closed(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "sale-later", stock=5, open_sale=False)
    r = admin.post("/api/admin/products/sale-later/sale", json={"action": "open", "starts_at": "2099-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["on_sale"] is False
    assert_error(buy(anon, "sale-later"), 409, "sale_closed", "product_id")


def test_sale_bad_action_is_422_and_unknown_product_404(admin: httpx.Client) -> None:
    create_product(admin, "sale-b")
    assert_error(admin.post("/api/admin/products/sale-b/sale", json={"action": "pause"}), 422, "validation_error",
                 "action")
    assert_error(admin.post("/api/admin/products/ghost/sale", json={"action": "open"}), 404, "unknown_product",
                 "product_id")


def test_stats_report_orders_revenue_sell_through_and_conversion(admin: httpx.Client, anon: httpx.Client,
                                                                shared_app: AppServer) -> None:
    create_product(admin, "stats-a", stock=10, price=4.0)
    for _ in range(4):
        anon.get("/api/products/stats-a")
    buy(anon, "stats-a", user="erin", qty=2)
    buy(anon, "stats-a", user="frank", qty=1)
    wait_drained(shared_app.env)
    r = admin.get("/api/admin/stats")
    assert r.status_code == 200
    row = next(p for p in r.json()["products"] if p["product_id"] == "stats-a")
    assert (row["orders"], row["units_sold"], row["revenue"], row["views"]) == (2, 3, 12.0, 4)
    assert (row["sell_through"], row["conversion"]) == (0.3, 0.5)
    assert r.json()["totals"]["queued_orders"] == 0


def test_unknown_route_is_404_json(anon: httpx.Client) -> None:
    assert_error(anon.get("/api/nope"), 404, "not_found")


def test_openapi_documents_every_contract_route(anon: httpx.Client) -> None:
    paths = anon.get("/openapi.json").json()["paths"]
    assert {"/health/live", "/health/ready", "/api/products", "/api/products/{product_id}", "/api/admin/products",
            "/api/admin/products/{product_id}/restock", "/api/admin/products/{product_id}/sale", "/api/buy",
            "/api/users/{user_id}/orders", "/api/admin/stats", "/api/admin/reconcile"} <= set(paths)


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
        count = next(float(line.split()[-1]) for line in m.splitlines()
                     if line.startswith("scalemart_rate_limited_total"))
        assert count >= 3


def test_stats_count_orders_as_they_are_accepted(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "live-a", stock=10, price=2.5)
    buy(anon, "live-a", user="gina", qty=3)
    row = next(p for p in admin.get("/api/admin/stats").json()["products"] if p["product_id"] == "live-a")
    assert (row["orders"], row["units_sold"], row["revenue"], row["stock_left"]) == (1, 3, 7.5, 7)


def test_reconcile_endpoint_is_clean_then_names_an_order_missing_from_mongodb(admin: httpx.Client,
                                                                               anon: httpx.Client,
                                                                               shared_app: AppServer) -> None:
    create_product(admin, "recon-a", stock=10)
    order_ids = [buy(anon, "recon-a", user=f"ivy{i}", qty=2).json()["order_id"] for i in range(2)]
    wait_drained(shared_app.env)
    r = admin.get("/api/admin/reconcile", params={"product_id": "recon-a", "require_drained": True})
    assert r.status_code == 200
    assert r.json() == {"clean": True, "products": [
        {"product": "recon-a", "stocked": 10, "left": 6, "taken": 4, "persisted": 4, "queued": 0, "by_users": 4,
         "orders": 2, "problems": []}]}
    shared_app.env.mongo().orders.delete_one({"_id": order_ids[0]})
    r = admin.get("/api/admin/reconcile", params={"product_id": "recon-a"}).json()
    assert r["clean"] is False and r["products"][0]["problems"] == ["taken 4 != persisted 2 + queued 0"]
    assert_error(admin.get("/api/admin/reconcile", params={"product_id": "bad id"}), 422, "validation_error",
                 "product_id")
