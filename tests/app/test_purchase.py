"""`POST /api/buy`: its happy path and every refusal."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.app.conftest import as_buyer, assert_error, buy, create_product


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


def test_buy_reusing_key_for_other_quantity_is_409_naming_idempotency_key(
    admin: httpx.Client, anon: httpx.Client
) -> None:
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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", 0),
        ("quantity", 101),
        ("quantity", "2"),
        ("quantity", 1.5),
        ("user_id", ""),
        ("user_id", "a:b"),
        ("product_id", "UPPER"),
        ("idempotency_key", "short"),
    ],
)
def test_buy_bad_field_is_422_naming_the_field(anon: httpx.Client, field: str, value: Any) -> None:
    body = {"user_id": "alice", "product_id": "buy-a", "quantity": 1, "idempotency_key": uuid.uuid4().hex, field: value}
    assert_error(anon.post("/api/buy", json=body, headers=as_buyer("alice")), 422, "validation_error", field)


def test_buy_missing_field_is_422_saying_required(anon: httpx.Client) -> None:
    body = assert_error(
        anon.post(
            "/api/buy", json={"user_id": "alice", "product_id": "buy-a", "quantity": 1}, headers=as_buyer("alice")
        ),
        422,
        "validation_error",
        "idempotency_key",
    )
    assert "required" in body["message"]


def test_buy_unknown_field_is_422(anon: httpx.Client) -> None:
    body = {"user_id": "alice", "product_id": "buy-a", "quantity": 1, "idempotency_key": uuid.uuid4().hex, "px": 1}
    assert_error(anon.post("/api/buy", json=body, headers=as_buyer("alice")), 422, "validation_error", "px")
