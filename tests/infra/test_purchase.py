"""A real purchase through the load balancer shows up as an order in MongoDB and in the metrics."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pymongo

from tests.infra.conftest import Environment


def test_purchase_reaches_mongodb_and_the_metrics(environment: Environment) -> None:
    from ops import secrets

    creds = secrets.load(environment.name)
    shop = environment.url("shop")
    admin = {"Authorization": f"Bearer {creds['scalemart_admin_token']}"}
    pid = f"verify-{uuid.uuid4().hex[:6]}"
    product = httpx.post(f"{shop}/api/admin/products", headers=admin, timeout=10,
                         json={"id": pid, "name": "Verify", "price": 12.5, "stock": 3, "open": True})
    assert product.status_code == 201, product.text
    user = f"verify-{uuid.uuid4().hex[:6]}"
    buy = httpx.post(f"{shop}/api/buy", timeout=10, json={
        "user_id": user, "product_id": pid, "quantity": 1, "idempotency_key": uuid.uuid4().hex})
    assert buy.status_code in (200, 201), buy.text
    order_id = buy.json()["order_id"]

    data = environment.hostvars(environment.group("data")[0])
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        host=data["private_address"], port=environment.port("mongodb"), username="scalemart",
        password=creds["mongodb_password"], serverSelectionTimeoutMS=5000)
    db = client[data.get("mongodb_database", "scalemart")]
    order = None
    deadline = time.monotonic() + 30
    while order is None and time.monotonic() < deadline:
        order = db["orders"].find_one({"_id": order_id})
        time.sleep(0.5)
    assert order is not None, f"order {order_id} never reached MongoDB"
    assert order["product_id"] == pid and order["user_id"] == user

    prom = environment.url_of("monitoring", "prometheus")
    seen = 0.0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = httpx.get(f"{prom}/api/v1/query", timeout=10,
                           params={"query": f'sum(scalemart_orders_total{{product="{pid}"}})'}).json()
        series = result["data"]["result"]
        seen = float(series[0]["value"][1]) if series else 0.0
        if seen >= 1:
            break
        time.sleep(3)
    assert seen >= 1, f"scalemart_orders_total for product {pid} never reached 1 in Prometheus"
