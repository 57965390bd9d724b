"""`/health/live`, `/health/ready`, and the answers every route shares (unknown route, OpenAPI)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.app.conftest import AppServer, WorkerProc, assert_error, buy, create_product, wait_drained


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


# --- every route
def test_unknown_route_is_404_json(anon: httpx.Client) -> None:
    assert_error(anon.get("/api/nope"), 404, "not_found")


def test_openapi_documents_every_contract_route(anon: httpx.Client) -> None:
    paths = anon.get("/openapi.json").json()["paths"]
    assert {
        "/health/live",
        "/health/ready",
        "/api/products",
        "/api/products/{product_id}",
        "/api/admin/products",
        "/api/admin/products/{product_id}/restock",
        "/api/admin/products/{product_id}/sale",
        "/api/buy",
        "/api/users/{user_id}/orders",
        "/api/admin/stats",
        "/api/admin/reconcile",
    } <= set(paths)
