"""What one API process holds between requests: its store clients, the buy batcher, the in-process fallbacks."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from scalemart import store
from scalemart.analytics.sources import Sources
from scalemart.settings import Settings


class State:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Any: redis-py types every reply as a sync/async union, which says nothing useful here
        self.redis: Any = store.redis_client(settings.redis_url)
        self.scripts = store.register_scripts(self.redis)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            # A generous socket timeout: a timed-out socket is closed and the next request pays a new
            # SCRAM handshake (costly on FerretDB), while the abandoned query keeps running server-side.
            settings.mongo_url,
            serverSelectionTimeoutMS=2000,
            connectTimeoutMS=2000,
            socketTimeoutMS=30000,
            tz_aware=True,
        )
        self.db = self.mongo[settings.mongo_db]
        # The last good answers, served (flagged stale) while Redis is unreachable.
        self.local: dict[str, tuple[float, dict[str, Any]]] = {}
        self.local_list: tuple[float, list[dict[str, Any]]] | None = None
        self.last_stock: dict[str, tuple[int | None, int | None]] = {}
        self.buyer_key = settings.buyer_token_key.get_secret_value()
        self.rate_limit = settings.rate_limit_requests
        self.rate_window = settings.rate_limit_window_seconds
        self.idem_ttl = settings.idempotency_ttl_seconds
        self.analytics = Sources(settings)  # the analytics console's Prometheus and Alertmanager clients
        self.buyer = store.BuyBatcher(
            self.scripts.buy,
            self.idem_ttl,
            self.rate_limit,
            self.rate_window,
            settings.user_orders_kept,
            settings.user_orders_ttl_days * 86400,
        )

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.analytics.aclose()
        await self.mongo.close()
