"""A user's orders: the newest from Redis at once (persisted or not), from MongoDB while Redis is down."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query

from scalemart import queries, store
from scalemart.deps import LIMITED, StateDep, UserId
from scalemart.errors import API_ERRORS, error_responses
from scalemart.models import OrdersOut

router = APIRouter(tags=["orders"], dependencies=LIMITED)


@router.get("/api/users/{user_id}/orders", response_model=OrdersOut, responses={**API_ERRORS, **error_responses(503)})
async def user_orders(st: StateDep, user_id: UserId, limit: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
    try:
        pipe = st.redis.pipeline(transaction=False)
        pipe.zadd(store.ACTIVE_USERS, {user_id: int(time.time() * 1000)})
        pipe.lrange(store.user_orders_key(user_id), 0, limit - 1)
        _, raw = await pipe.execute()
    except store.REDIS_DOWN:
        return await queries.orders_from_mongo(st, user_id, limit)
    orders = [json.loads(item) for item in raw]
    return {"user_id": user_id, "source": "redis", "orders": [
        queries.order_out(o["order_id"], user_id, o, datetime.fromtimestamp(o["created_at_ms"] / 1000, UTC))
        for o in orders]}
