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
    product = httpx.post(
        f"{shop}/api/admin/products",
        headers=admin,
        timeout=10,
        json={"id": pid, "name": "Verify", "price": 12.5, "stock": 3, "open": True},
    )
    assert product.status_code == 201, product.text
    user = f"verify-{uuid.uuid4().hex[:6]}"
    minted = httpx.post(f"{shop}/api/admin/tokens", headers=admin, timeout=10, json={"user_id": user})
    assert minted.status_code == 201, minted.text  # the buyer's token, as the shop's login hands it out
    buyer = {"Authorization": f"Bearer {minted.json()['token']}"}
    assert (
        httpx.post(
            f"{shop}/api/buy", timeout=10, json={"product_id": pid, "quantity": 1, "idempotency_key": "x" * 8}
        ).status_code
        == 401
    ), "a purchase without a buyer token was taken"
    buy = httpx.post(
        f"{shop}/api/buy",
        timeout=10,
        headers=buyer,
        json={"product_id": pid, "quantity": 1, "idempotency_key": uuid.uuid4().hex},
    )
    assert buy.status_code in (200, 201), buy.text
    order_id = buy.json()["order_id"]

    data = environment.hostvars(environment.group("data")[0])
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        host=data["private_address"],
        port=environment.port("mongodb"),
        username="scalemart",
        password=creds["mongodb_password"],
        serverSelectionTimeoutMS=5000,
    )
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
        result = httpx.get(
            f"{prom}/api/v1/query",
            timeout=10,
            auth=environment.auth("prometheus"),
            params={"query": f'sum(scalemart_orders_total{{product="{pid}"}})'},
        ).json()
        series = result["data"]["result"]
        seen = float(series[0]["value"][1]) if series else 0.0
        if seen >= 1:
            break
        time.sleep(3)
    assert seen >= 1, f"scalemart_orders_total for product {pid} never reached 1 in Prometheus"


def test_the_analytics_console_sees_every_host_and_its_sources(environment: Environment) -> None:
    """The app role pointed the console at this environment's Prometheus and Alertmanager: every host of the
    inventory is in the realtime figures, the alerts answer, and the page asks for a login."""
    from ops import secrets

    shop = environment.url("shop")
    admin = {"Authorization": f"Bearer {secrets.load(environment.name)['scalemart_admin_token']}"}
    hosts: set[str] = set()
    deadline = time.monotonic() + 60  # a host that has just joined appears after its first scrape and record
    while time.monotonic() < deadline:
        r = httpx.get(f"{shop}/analytics/api/metrics/realtime", headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        hosts = {h["host"] for h in r.json()["hosts"] if h["cpu_ratio"] is not None and h["memory_ratio"] is not None}
        if hosts >= set(environment.inventory.hosts()):
            break
        time.sleep(3)
    assert hosts >= set(environment.inventory.hosts()), (
        f"the console shows {sorted(hosts)}, the inventory has {sorted(environment.inventory.hosts())}"
    )
    alerts = httpx.get(f"{shop}/analytics/api/alerts", headers=admin, timeout=10)
    assert alerts.status_code == 200, alerts.text
    assert "Watchdog" in {a["name"] for a in alerts.json()["active"]}, "the always-firing alert is not listed"
    page = httpx.get(f"{shop}/analytics/dashboard", timeout=10)
    assert page.status_code == 303 and page.headers["location"].endswith("/analytics/login"), page.status_code
    assert httpx.get(f"{shop}/analytics/api/metrics/business", timeout=10).status_code == 401
