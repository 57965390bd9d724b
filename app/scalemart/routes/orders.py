"""A user's orders: the newest from Redis at once (persisted or not), from MongoDB while Redis is down.

A buyer reads their own (`/api/users/me/orders`, the user from the buyer token); any user's are admin only
(a buyer token there gets 403).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from scalemart import queries, store
from scalemart.deps import ADMIN_NOT_BUYER, LIMITED, BuyerDep, StateDep, UserId
from scalemart.errors import ADMIN_ERRORS, API_ERRORS, error_responses
from scalemart.models import OrdersOut

router = APIRouter(tags=["orders"])
Limit = Annotated[int, Query(ge=1, le=500)]


# before /api/users/{user_id}/orders, which would otherwise take "me" for a user id
@router.get(
    "/api/users/me/orders",
    response_model=OrdersOut,
    dependencies=LIMITED,
    responses={**API_ERRORS, **error_responses(401, 503)},
)
async def my_orders(st: StateDep, user: BuyerDep, limit: Limit = 50) -> dict[str, Any]:
    """The orders of the buyer token's user."""
    return await _orders(st, user, limit)


@router.get(
    "/api/users/{user_id}/orders",
    response_model=OrdersOut,
    dependencies=ADMIN_NOT_BUYER,
    responses={**API_ERRORS, **ADMIN_ERRORS, **error_responses(403, 503)},
)
async def user_orders(st: StateDep, user_id: UserId, limit: Limit = 50) -> dict[str, Any]:
    """Any user's orders: admin only (401 without the admin token, 403 with a buyer token)."""
    return await _orders(st, user_id, limit)


async def _orders(st: StateDep, user_id: str, limit: int) -> dict[str, Any]:
    try:
        pipe = st.redis.pipeline(transaction=False)
        pipe.zadd(store.ACTIVE_USERS, {user_id: int(time.time() * 1000)})
        pipe.lrange(store.user_orders_key(user_id), 0, limit - 1)
        _, raw = await pipe.execute()
    except store.REDIS_DOWN:
        return await queries.orders_from_mongo(st, user_id, limit)
    orders = [json.loads(item) for item in raw]
    return {
        "user_id": user_id,
        "source": "redis",
        "orders": [
            queries.order_out(o["order_id"], user_id, o, datetime.fromtimestamp(o["created_at_ms"] / 1000, UTC))
            for o in orders
        ],
    }
