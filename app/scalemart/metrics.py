"""Prometheus metrics of the API processes.

`scalemart serve` runs several uvicorn worker processes, so prometheus-client runs in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR is set by the CLI before this module is
imported). Values that live in Redis (stock left, active users) are read at scrape time
instead of being kept per process, so every worker reports the same number.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Latency buckets centred on the API's SLO range (tens of milliseconds) with a tail to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "scalemart_http_requests_total", "HTTP requests by route template, method and status", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "scalemart_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    "scalemart_http_requests_in_progress", "HTTP requests being served", ["method"], multiprocess_mode="livesum"
)
ORDERS = Counter("scalemart_orders_total", "Accepted orders (purchases that took stock)", ["product"])
REVENUE = Counter("scalemart_revenue_total", "Revenue of accepted orders, in currency units")
PRODUCT_VIEWS = Counter("scalemart_product_views_total", "Product detail reads", ["product"])
PURCHASE_ATTEMPTS = Counter("scalemart_purchase_attempts_total", "Purchase attempts by outcome", ["product", "result"])
CACHE_HITS = Counter("scalemart_cache_hits_total", "Product reads answered from the Redis cache")
CACHE_MISSES = Counter("scalemart_cache_misses_total", "Product reads that had to go to MongoDB")
LOGIN_FAILURES = Counter("scalemart_login_failures_total", "Admin requests with a missing or wrong credential")
TOKEN_FAILURES = Counter(
    "scalemart_token_failures_total",
    "Buyer requests refused for their token, by reason (missing, malformed, expired, bad_signature, bad_claims)",
    ["reason"],
)
INJECTION_ATTEMPTS = Counter(
    "scalemart_injection_attempts_total",
    "Refused requests whose input carried a MongoDB operator or another injection pattern",
)
OVERSIZED_BODIES = Counter(
    "scalemart_oversized_bodies_total", "Requests refused for a body over SCALEMART_MAX_BODY_BYTES"
)
RATE_LIMITED = Counter("scalemart_rate_limited_total", "Requests rejected by the per-client rate limiter")
APP_INFO = Gauge(
    "scalemart_app_info",
    "Always 1; labels carry the version and environment",
    ["version", "environment"],
    multiprocess_mode="max",
)


class SnapshotCollector(Collector):
    """Gauges whose values were fetched from Redis just before this scrape."""

    def __init__(self, stock_left: dict[str, int], active_users: int | None) -> None:
        self.stock_left = stock_left
        self.active_users = active_users

    def collect(self):  # type: ignore[no-untyped-def]
        stock = GaugeMetricFamily("scalemart_stock_left", "Units left per product (from Redis)", labels=["product"])
        for product, left in sorted(self.stock_left.items()):
            stock.add_metric([product], left)
        yield stock
        if self.active_users is not None:
            yield GaugeMetricFamily(
                "scalemart_active_users", "Distinct users seen in the last 5 minutes", value=self.active_users
            )


_SEEN: set[str] = set()


def known_products(ids: list[str]) -> None:
    """Each product's view, sale and order series at 0 before the first of them: a counter that is born with
    its first increment has that increment in its first sample, which `increase` and `rate` never count
    (a short sale could read as no views at all). The product list does this for every product it shows."""
    for pid in ids:
        if pid not in _SEEN:
            _SEEN.add(pid)
            PRODUCT_VIEWS.labels(pid)
            ORDERS.labels(pid)
            PURCHASE_ATTEMPTS.labels(pid, "success")


def render(snapshot: SnapshotCollector) -> bytes:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        for metric in (
            HTTP_REQUESTS,
            HTTP_DURATION,
            HTTP_IN_PROGRESS,
            ORDERS,
            REVENUE,
            PRODUCT_VIEWS,
            PURCHASE_ATTEMPTS,
            CACHE_HITS,
            CACHE_MISSES,
            LOGIN_FAILURES,
            TOKEN_FAILURES,
            INJECTION_ATTEMPTS,
            OVERSIZED_BODIES,
            RATE_LIMITED,
            APP_INFO,
        ):
            registry.register(metric)
    registry.register(snapshot)
    return generate_latest(registry)
