"""`scalemart reconcile`: prove per product that stock taken equals units ordered.

stocked (initial + restocks) - stock left  ==  units in persisted orders + units still queued
and the per-user purchase counters add up to the same number. Exit 0 iff every product is clean.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis
from pymongo import MongoClient

from scalemart import store
from scalemart.settings import Settings


@dataclass
class Row:
    product: str
    stocked: int
    left: int
    persisted: int
    queued: int
    by_users: int
    orders: int

    @property
    def taken(self) -> int:
        return self.stocked - self.left

    def problems(self, require_drained: bool) -> list[str]:
        out = []
        if self.left < 0:
            out.append("negative stock")
        if self.taken != self.persisted + self.queued:
            out.append(f"taken {self.taken} != persisted {self.persisted} + queued {self.queued}")
        if self.by_users != self.taken:
            out.append(f"per-user counters sum to {self.by_users}, not {self.taken}")
        if require_drained and self.queued:
            out.append(f"{self.queued} unit(s) still queued (is `scalemart worker` running?)")
        return out


def collect(settings: Settings, product: str | None = None) -> list[Row]:
    """Every product, or only `product` (MongoDB still reads every order: FerretDB/SQLite cannot index)."""
    r: Any = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=2)
    mongo: Any = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        return _collect(r, mongo[settings.mongo_db], product)
    finally:
        r.close()
        mongo.close()


def _collect(r: Any, db: Any, product: str | None) -> list[Row]:
    # Summed here rather than with $group: the proof should not depend on the server's aggregation
    # (FerretDB 1.24 gets multi-accumulator $group wrong), and a scan of the orders is cheap.
    persisted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d in db.orders.find({"product_id": product} if product else {}, {"product_id": 1, "quantity": 1}):
        row = persisted[d["product_id"]]
        row[0] += int(d["quantity"])
        row[1] += 1
    queued: dict[str, int] = defaultdict(int)
    start = "-"
    while True:
        chunk: list[Any] = r.xrange(store.STREAM, min=start, count=1000)
        if not chunk:
            break
        for _, fields in chunk:
            if product is None or fields["product_id"] == product:
                queued[fields["product_id"]] += int(fields["quantity"])
        start = "(" + chunk[-1][0]
    ids = ({product} if product else set(r.smembers(store.PRODUCTS))) | set(persisted) | set(queued)
    rows = []
    for pid in sorted(ids):
        stock, stocked = r.hmget(store.product_key(pid), ["stock", "stocked"])
        by_users = sum(int(v) for v in r.hvals(store.bought_key(pid)))
        rows.append(
            Row(pid, int(stocked or 0), int(stock or 0), persisted[pid][0], queued[pid], by_users, persisted[pid][1])
        )
    return rows


def report(rows: list[Row], require_drained: bool) -> tuple[str, bool]:
    head = (
        f"{'product':<24} {'stocked':>9} {'left':>9} {'taken':>9} {'persisted':>9} {'queued':>7} {'orders':>7}  status"
    )
    lines = [head, "-" * len(head)]
    clean = True
    for row in rows:
        problems = row.problems(require_drained)
        clean = clean and not problems
        lines.append(
            f"{row.product:<24} {row.stocked:>9} {row.left:>9} {row.taken:>9} {row.persisted:>9} "
            f"{row.queued:>7} {row.orders:>7}  {'ok' if not problems else 'MISMATCH: ' + '; '.join(problems)}"
        )
    lines.append(f"{len(rows)} product(s): {'clean' if clean else 'NOT clean'}")
    return "\n".join(lines), clean
