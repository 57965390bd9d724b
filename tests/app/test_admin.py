"""The admin routes: auth, products, sales, stats, reconcile."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.app.conftest import AppServer, as_buyer, assert_error, buy, create_product, wait_drained

# --- auth
ADMIN_CALLS = [
    ("POST", "/api/admin/products", {"id": "x", "name": "x", "price": 1, "stock": 1}),
    ("POST", "/api/admin/products/x/restock", {"quantity": 1}),
    ("POST", "/api/admin/products/x/sale", {"action": "open"}),
    ("GET", "/api/admin/stats", None),
    ("GET", "/api/admin/reconcile", None),
    ("POST", "/api/admin/tokens", {"user_id": "x"}),
    ("GET", "/api/users/x/orders", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_without_credential_is_401_naming_authorization(
    anon: httpx.Client, method: str, path: str, body: Any
) -> None:
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
    buyer = as_buyer("alice") if path == "/api/buy" else {}  # a purchase needs a buyer token first
    r = admin.post(path, content=b'{"quantity": 1,', headers={"content-type": "application/json", **buyer})
    assert_error(r, 400, "malformed_json", "body")


# --- products
def test_create_product_twice_is_409_naming_id(admin: httpx.Client) -> None:
    create_product(admin, "dup-a")
    r = admin.post("/api/admin/products", json={"id": "dup-a", "name": "again", "price": 1, "stock": 1})
    assert_error(r, 409, "product_exists", "id")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "Bad Id"),
        ("price", 0),
        ("price", -1),
        ("price", 0.001),
        ("price", True),
        ("price", "9.99"),
        ("stock", -1),
        ("stock", "5"),
        ("stock", True),
        ("name", ""),
        ("name", "a\nb"),
        ("per_user_limit", 0),
    ],
)
def test_create_product_bad_field_is_422_naming_the_field(admin: httpx.Client, field: str, value: Any) -> None:
    body = {"id": "bad-create", "name": "n", "price": 1.0, "stock": 1, field: value}
    assert_error(admin.post("/api/admin/products", json=body), 422, "validation_error", field)


def test_create_product_sale_window_must_be_ordered(admin: httpx.Client) -> None:
    body = {
        "id": "bad-window",
        "name": "n",
        "price": 1.0,
        "stock": 1,
        "starts_at": "2030-01-02T00:00:00Z",
        "ends_at": "2030-01-01T00:00:00Z",
    }
    body_out = assert_error(admin.post("/api/admin/products", json=body), 422, "validation_error")
    assert "ends_at" in body_out["message"]


def test_restock_adds_units(admin: httpx.Client) -> None:
    create_product(admin, "restock-a", stock=2)
    r = admin.post("/api/admin/products/restock-a/restock", json={"quantity": 5})
    assert r.status_code == 200, r.text
    assert (r.json()["stock_left"], r.json()["stocked"]) == (7, 7)


def test_restock_unknown_product_is_404_and_bad_quantity_422(admin: httpx.Client) -> None:
    assert_error(
        admin.post("/api/admin/products/ghost/restock", json={"quantity": 5}), 404, "unknown_product", "product_id"
    )
    create_product(admin, "restock-b")
    assert_error(
        admin.post("/api/admin/products/restock-b/restock", json={"quantity": 0}), 422, "validation_error", "quantity"
    )


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
    assert_error(
        admin.post("/api/admin/products/sale-b/sale", json={"action": "pause"}), 422, "validation_error", "action"
    )
    assert_error(
        admin.post("/api/admin/products/ghost/sale", json={"action": "open"}), 404, "unknown_product", "product_id"
    )


def test_stats_report_orders_revenue_sell_through_and_conversion(
    admin: httpx.Client, anon: httpx.Client, shared_app: AppServer
) -> None:
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


def test_stats_count_orders_as_they_are_accepted(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "live-a", stock=10, price=2.5)
    buy(anon, "live-a", user="gina", qty=3)
    row = next(p for p in admin.get("/api/admin/stats").json()["products"] if p["product_id"] == "live-a")
    assert (row["orders"], row["units_sold"], row["revenue"], row["stock_left"]) == (1, 3, 7.5, 7)


def test_reconcile_endpoint_is_clean_then_names_an_order_missing_from_mongodb(
    admin: httpx.Client, anon: httpx.Client, shared_app: AppServer
) -> None:
    create_product(admin, "recon-a", stock=10)
    order_ids = [buy(anon, "recon-a", user=f"ivy{i}", qty=2).json()["order_id"] for i in range(2)]
    wait_drained(shared_app.env)
    r = admin.get("/api/admin/reconcile", params={"product_id": "recon-a", "require_drained": True})
    assert r.status_code == 200
    assert r.json() == {
        "clean": True,
        "products": [
            {
                "product": "recon-a",
                "stocked": 10,
                "left": 6,
                "taken": 4,
                "persisted": 4,
                "queued": 0,
                "by_users": 4,
                "orders": 2,
                "problems": [],
            }
        ],
    }
    shared_app.env.mongo().orders.delete_one({"_id": order_ids[0]})
    r = admin.get("/api/admin/reconcile", params={"product_id": "recon-a"}).json()
    assert r["clean"] is False and r["products"][0]["problems"] == ["taken 4 != persisted 2 + queued 0"]
    assert_error(
        admin.get("/api/admin/reconcile", params={"product_id": "bad id"}), 422, "validation_error", "product_id"
    )
