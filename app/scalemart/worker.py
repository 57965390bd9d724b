"""The order worker: moves accepted orders from the Redis stream into MongoDB.

At-least-once delivery from the stream plus an idempotent write (the order id is the
document `_id`) gives exactly-once orders: a worker killed after the insert and before the
acknowledgement re-reads its pending entries on restart, the insert hits a duplicate key,
and the entry is acknowledged. An entry is deleted from the stream only after MongoDB has
it, so the stream length is the number of orders not yet persisted.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from datetime import UTC, datetime
from typing import Any

import redis
import redis.exceptions
from pymongo import MongoClient
from pymongo.errors import BulkWriteError, PyMongoError

from scalemart import store
from scalemart.settings import Settings

log = logging.getLogger("scalemart.worker")
DUPLICATE_KEY = 11000


class WorkerMetrics:
    """The worker is one process: plain (non-multiprocess) prometheus-client in its own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.queue_length = Gauge(
            "scalemart_queue_length", "Accepted orders waiting to be persisted", registry=self.registry
        )
        self.oldest_age = Gauge(
            "scalemart_queue_oldest_message_age_seconds",
            "Age of the oldest order waiting to be persisted (0 when none)",
            registry=self.registry,
        )
        self.task_duration = Histogram(
            "scalemart_worker_task_duration_seconds",
            "Time to persist and acknowledge one batch of orders",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.heartbeat = Gauge(
            "scalemart_worker_heartbeat_timestamp_seconds",
            "Unix time of the worker's last loop",
            registry=self.registry,
        )
        self.persisted = Counter(
            "scalemart_worker_orders_persisted", "Orders written to MongoDB by this worker", registry=self.registry
        )

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)


def order_doc(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "_id": fields["order_id"],
        "user_id": fields["user_id"],
        "product_id": fields["product_id"],
        "quantity": int(fields["quantity"]),
        "unit_price_cents": int(fields["unit_price_cents"]),
        "total_cents": int(fields["total_cents"]),
        "created_at": datetime.fromtimestamp(int(fields["created_at_ms"]) / 1000, UTC),
        "idempotency_key": fields.get("idempotency_key", ""),
        "stream_id": entry_id,
    }


class Worker:
    def __init__(self, settings: Settings, worker_metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.name = settings.worker_name or socket.gethostname()
        self.redis: Any = redis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10
        )
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True
        )
        self.orders = self.mongo[settings.mongo_db].orders
        self.metrics = worker_metrics
        self.stopping = False
        self.group_ready = False

    def ensure_group(self) -> None:
        try:
            # id 0: orders queued before the group existed are persisted too
            self.redis.xgroup_create(store.STREAM, store.GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.orders.create_index([("user_id", 1), ("created_at", -1)])
        self.group_ready = True

    def persist(self, entries: list[tuple[str, dict[str, str]]]) -> int:
        """Write a batch idempotently, then acknowledge and delete it. Returns newly written orders."""
        if not entries:
            return 0
        start = time.perf_counter()
        docs = [order_doc(eid, f) for eid, f in entries]
        written = len(docs)
        try:
            self.orders.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                raise
            written -= len(errors)
        ids = [eid for eid, _ in entries]
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(store.STREAM, store.GROUP, *ids)
        pipe.xdel(store.STREAM, *ids)
        pipe.execute()
        if self.metrics:
            self.metrics.task_duration.observe(time.perf_counter() - start)
            self.metrics.persisted.inc(written)
        return written

    def update_gauges(self) -> None:
        if not self.metrics:
            return
        length = self.redis.xlen(store.STREAM)
        first = self.redis.xrange(store.STREAM, count=1)
        age = max(time.time() - int(first[0][0].split("-")[0]) / 1000, 0.0) if first else 0.0
        self.metrics.queue_length.set(length)
        self.metrics.oldest_age.set(age)
        self.metrics.heartbeat.set(time.time())

    def step(self, block_ms: int = 1000) -> int:
        """One loop: own pending entries first (after a crash), then stale ones of dead consumers, then new."""
        if not self.group_ready:
            self.ensure_group()
        batch = self.settings.worker_batch_size
        done = 0
        pending = self.redis.xreadgroup(store.GROUP, self.name, {store.STREAM: "0"}, count=batch)
        entries = pending[0][1] if pending else []
        gone = [eid for eid, fields in entries if not fields]
        if gone:  # deleted from the stream but never acknowledged: nothing left to persist
            self.redis.xack(store.STREAM, store.GROUP, *gone)
        entries = [e for e in entries if e[1]]
        if not entries:
            claimed = self.redis.xautoclaim(
                store.STREAM,
                store.GROUP,
                self.name,
                int(self.settings.worker_claim_idle_seconds * 1000),
                "0-0",
                count=batch,
            )
            entries = [e for e in claimed[1] if e[1]]
        if not entries:
            fresh = self.redis.xreadgroup(store.GROUP, self.name, {store.STREAM: ">"}, count=batch, block=block_ms)
            entries = fresh[0][1] if fresh else []
        done += self.persist(entries)
        self.update_gauges()
        return done

    def drained(self) -> bool:
        return int(self.redis.xlen(store.STREAM)) == 0

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("worker %s consuming %s as group %s", self.name, store.STREAM, store.GROUP)
        backoff = 0.5
        while not self.stopping:
            try:
                self.step()
                backoff = 0.5
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, PyMongoError) as exc:
                # Nothing is lost while a store is down: entries stay pending in the stream.
                log.warning("store unreachable (%s: %s); retrying in %.1f s", exc.__class__.__name__, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)
        log.info("worker %s stopped", self.name)

    def _stop(self, *_: object) -> None:
        self.stopping = True
