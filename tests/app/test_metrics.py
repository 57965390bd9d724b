"""After a short scripted session, /metrics of the API and of the worker expose every contract metric."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import AppServer, WorkerProc, as_buyer, create_product, free_port, wait_drained

API_METRICS = {
    "scalemart_http_requests_total": "counter",
    "scalemart_http_request_duration_seconds": "histogram",
    "scalemart_http_requests_in_progress": "gauge",
    "scalemart_active_users": "gauge",
    "scalemart_orders_total": "counter",
    "scalemart_revenue_total": "counter",
    "scalemart_stock_left": "gauge",
    "scalemart_product_views_total": "counter",
    "scalemart_purchase_attempts_total": "counter",
    "scalemart_cache_hits_total": "counter",
    "scalemart_cache_misses_total": "counter",
    "scalemart_login_failures_total": "counter",
    "scalemart_rate_limited_total": "counter",
    "scalemart_app_info": "gauge",
}
WORKER_METRICS = {
    "scalemart_queue_length": "gauge",
    "scalemart_queue_oldest_message_age_seconds": "gauge",
    "scalemart_worker_task_duration_seconds": "histogram",
    "scalemart_worker_heartbeat_timestamp_seconds": "gauge",
    "scalemart_worker_orders_persisted_total": "counter",
}


def samples(text_or_families: str | Iterable[Metric]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    families = (
        text_string_to_metric_families(text_or_families) if isinstance(text_or_families, str) else text_or_families
    )
    for family in families:
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def types(text: str) -> dict[str, str]:
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        found[name] = family.type
    return found


def value(s: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in s.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def test_every_contract_metric_is_exposed_after_a_session(make_env: Any, running: list[Any]) -> None:
    env = make_env(rate_limit_requests=60, rate_limit_window_seconds=60, release="9.9.9-test")
    server = AppServer(env).start()  # two uvicorn workers: the numbers must add up across processes
    running.append(server)
    worker_port = free_port()
    running.append(WorkerProc(env, metrics_port=worker_port).start())
    admin, c = server.client(admin=True), server.client()
    create_product(admin, "m-a", stock=10, price=2.5)
    create_product(admin, "m-b", stock=1, price=1)
    for _ in range(6):
        c.get("/api/products/m-a")
    c.get("/api/products")
    for i, (user, product, qty) in enumerate(
        [("ann", "m-a", 2), ("ben", "m-a", 1), ("ann", "m-b", 1), ("cid", "m-b", 1)]
    ):
        c.post(
            "/api/buy",
            json={
                "user_id": user,
                "product_id": product,
                "quantity": qty,
                "idempotency_key": f"metrics-{i}-{uuid.uuid4().hex[:8]}",
            },
            headers=as_buyer(user),
        )
    c.post(
        "/api/buy",
        json={"user_id": "ben", "product_id": "m-a", "quantity": 5, "idempotency_key": "m-limit-1"},
        headers=as_buyer("ben"),
    )
    c.get("/api/admin/stats", headers={"Authorization": "Bearer nope"})
    c.get("/api/admin/stats")
    limited = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.9"))
    statuses = [limited.get("/api/products").status_code for _ in range(65)]
    assert 429 in statuses
    wait_drained(env, expected_orders=3)
    time.sleep(1.5)  # one more worker loop so its gauges reflect the drained queue

    text = c.get("/metrics").text
    assert types(text).keys() >= API_METRICS.keys(), API_METRICS.keys() - types(text).keys()
    for name, kind in API_METRICS.items():
        assert types(text)[name] == kind, name
    s = samples(text)
    assert (
        value(s, "scalemart_http_requests_total", route="/api/products/{product_id}", method="GET", status="200") == 6
    )
    assert value(s, "scalemart_http_request_duration_seconds_count", route="/api/buy", method="POST") == 5
    assert value(s, "scalemart_product_views_total", product="m-a") == 6
    assert value(s, "scalemart_orders_total", product="m-a") == 2
    assert value(s, "scalemart_revenue_total") == 2 * 2.5 + 2.5 + 1
    assert value(s, "scalemart_purchase_attempts_total", product="m-b", result="out_of_stock") == 1
    assert value(s, "scalemart_purchase_attempts_total", product="m-a", result="limit_exceeded") == 1
    assert value(s, "scalemart_stock_left", product="m-a") == 7
    assert value(s, "scalemart_stock_left", product="m-b") == 0
    assert value(s, "scalemart_active_users") == 3
    assert value(s, "scalemart_login_failures_total") == 2
    assert value(s, "scalemart_rate_limited_total") >= 1
    assert value(s, "scalemart_cache_hits_total") >= 5 and value(s, "scalemart_cache_misses_total") >= 1
    assert value(s, "scalemart_app_info", version="9.9.9-test", environment="test") == 1
    assert value(s, "scalemart_http_requests_in_progress") >= 1  # the scrape itself

    wtext = httpx.get(f"http://127.0.0.1:{worker_port}/metrics").text
    assert types(wtext).keys() >= WORKER_METRICS.keys(), WORKER_METRICS.keys() - types(wtext).keys()
    ws = samples(wtext)
    assert value(ws, "scalemart_worker_orders_persisted_total") == 3
    assert value(ws, "scalemart_queue_length") == 0
    assert value(ws, "scalemart_queue_oldest_message_age_seconds") == 0
    assert value(ws, "scalemart_worker_task_duration_seconds_count") >= 1
    assert abs(value(ws, "scalemart_worker_heartbeat_timestamp_seconds") - time.time()) < 30


def test_worker_reports_queue_length_and_age_while_orders_wait(make_env: Any, running: list[Any]) -> None:
    env = make_env()
    server = AppServer(env, workers=1).start()
    running.append(server)
    with server.client(admin=True) as c:
        create_product(c, "m-q", stock=10)
        for i in range(3):
            c.post(
                "/api/buy",
                json={"user_id": f"q{i}", "product_id": "m-q", "quantity": 1, "idempotency_key": f"queue-wait-{i}"},
                headers=as_buyer(f"q{i}"),
            )
    time.sleep(1.2)
    from scalemart.worker import Worker, WorkerMetrics

    w = Worker(env.settings(), WorkerMetrics())
    w.ensure_group()
    w.update_gauges()  # before the first drain step: the orders are waiting
    assert w.metrics is not None
    assert w.metrics.queue_length._value.get() == 3
    assert w.metrics.oldest_age._value.get() >= 1.0
    with server.client() as c:
        ready = c.get("/health/ready").json()
    assert ready["checks"]["worker_lag"] == "ok"  # 1 s is under the default bound


def test_request_counts_add_up_across_uvicorn_worker_processes(
    make_env: Any, running: list[Any], tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prometheus"
    server = AppServer(make_env(metrics_dir=metrics_dir)).start()  # --workers 2
    running.append(server)
    sent = 300

    def get(path: str) -> httpx.Response:  # a new connection each time, so either process may accept it
        r = httpx.get(server.url + path, timeout=30)
        assert r.status_code == 200, r.text
        return r

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, ["/api/products"] * sent))
        scrapes = [samples(r.text) for r in pool.map(get, ["/metrics"] * 8)]
    # Each process writes its own counter_<pid>.db, so the files tell which processes served the requests.
    served = {
        f.name: value(
            samples(MultiProcessCollector.merge([str(f)])), "scalemart_http_requests_total", route="/api/products"
        )
        for f in metrics_dir.glob("counter_*.db")
    }
    assert sum(served.values()) == sent and sum(1 for n in served.values() if n) == 2, served
    # Neither process served them all, so a scrape that counted only its own process would fall short.
    for s in scrapes:
        assert value(s, "scalemart_http_requests_total", route="/api/products", method="GET", status="200") == sent


def test_the_product_list_starts_each_products_view_and_sale_series_at_zero(shared_app: AppServer) -> None:
    # A series born with its first view has that view in its first sample, which `increase` never counts: a short
    # sale could read as no views (the conversion stat's "No data"). Listing the products starts them at 0.
    pid = f"zero-{uuid.uuid4().hex[:8]}"
    with shared_app.client(admin=True) as admin:
        create_product(admin, pid)
        deadline = time.monotonic() + 15  # each process keeps its list a few seconds (SCALEMART_LOCAL_CACHE_TTL)
        while pid not in {p["id"] for p in admin.get("/api/products").json()["products"]}:
            assert time.monotonic() < deadline, f"{pid} never appeared in the product list"
            time.sleep(0.5)
        before = samples(admin.get("/metrics").text)
    assert [v for lab, v in before["scalemart_product_views_total"] if lab.get("product") == pid] == [0.0]
    assert [v for lab, v in before["scalemart_orders_total"] if lab.get("product") == pid] == [0.0]
    assert [
        v
        for lab, v in before["scalemart_purchase_attempts_total"]
        if lab.get("product") == pid and lab.get("result") == "success"
    ] == [0.0]
