"""POST /api/buy, the hot path: one Redis script call per batch of purchases (store.BuyBatcher)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from scalemart import metrics, store
from scalemart.deps import buyer_of, client_id, rate_limit, state_of
from scalemart.errors import (
    API_ERRORS,
    BODY_ERRORS,
    ApiError,
    error_responses,
    rate_limited,
    redis_unavailable,
    unknown_product,
)
from scalemart.models import BuyIn, BuyOut

router = APIRouter(tags=["purchase"])

# The body is read by hand (see buy), so its schema is documented by hand.
BUY_REQUEST_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": BuyIn.model_json_schema()}}}
}


async def _buyer_and_body(request: Request) -> tuple[str, BuyIn]:
    user = buyer_of(request)
    try:
        body = BuyIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    if body.user_id is not None and body.user_id != user:
        raise ApiError(
            403,
            "user_mismatch",
            f"user_id '{body.user_id}' is not the user of the buyer token; leave "
            "user_id out (the token names the buyer) or send that user's own token",
            field="user_id",
        )
    return user, body


@router.post(
    "/api/buy",
    response_model=BuyOut,
    status_code=201,
    responses={**API_ERRORS, **BODY_ERRORS, **error_responses(401, 403, 404, 409, 503)},
    openapi_extra=BUY_REQUEST_BODY,
)
async def buy(request: Request) -> Any:
    # The hot path: the body is validated straight from bytes by pydantic-core (FastAPI's generic
    # body handling costs more than the sale itself), the answer is built by hand (no response-model
    # validation), there are no dependencies to resolve, and rate limiting happens inside the buy
    # script, so a purchase is one Redis round trip. The buyer is the token's user, checked first.
    try:
        user, body = await _buyer_and_body(request)
    except (ApiError, RequestValidationError):
        # A refused buy never reaches the buy script, which spends the client's budget: spend it here, so a
        # flood of forged tokens or bad bodies is limited like every other request (429 once it is spent).
        await rate_limit(request)
        raise
    st = state_of(request)
    fingerprint = f"{body.product_id}|{body.quantity}"
    try:
        kind, raw = await st.buyer.buy(
            user, body.product_id, body.quantity, uuid.uuid4().hex, body.idempotency_key, client_id(request)
        )
    except store.REDIS_DOWN:
        raise redis_unavailable("buying") from None
    res = json.loads(raw)
    result = res["result"]
    headers: dict[str, str] = {}
    if kind == "replay":
        if res.get("fingerprint") != fingerprint:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this idempotency_key was already used by this user "
                "for a different product or quantity; use a new key for a new purchase",
                field="idempotency_key",
            )
        metrics.PURCHASE_ATTEMPTS.labels(body.product_id, "duplicate").inc()
        headers["Idempotent-Replayed"] = "true"
    elif result == "rate_limited":
        metrics.RATE_LIMITED.inc()
        raise rate_limited(st.rate_limit, st.rate_window, max(int(res.get("retry_after", 1)), 1))
    elif result == "unknown_product":
        raise unknown_product(body.product_id)
    else:
        metrics.PURCHASE_ATTEMPTS.labels(body.product_id, result).inc()
        if result == "success":
            metrics.ORDERS.labels(body.product_id).inc()
            metrics.REVENUE.inc(res["total_cents"] / 100)
    if result == "success":
        out = {
            "order_id": res["order_id"],
            "status": "accepted",
            "user_id": user,
            "product_id": body.product_id,
            "quantity": body.quantity,
            "unit_price": store.cents_to_units(res["unit_price_cents"]),
            "total": store.cents_to_units(res["total_cents"]),
            "stock_left": res["stock_left"],
            "created_at": datetime.fromtimestamp(res["created_at_ms"] / 1000, UTC).isoformat(),
        }
        return JSONResponse(out, status_code=201, headers=headers)
    details = {k: v for k, v in res.items() if k in ("stock_left", "already_bought", "per_user_limit")}
    if result == "closed":
        err = ApiError(
            409,
            "sale_closed",
            f"product_id '{body.product_id}' is not on sale now; check its sale "
            f"window with GET /api/products/{body.product_id}",
            field="product_id",
            details=details,
        )
    elif result == "out_of_stock":
        err = ApiError(
            409,
            "out_of_stock",
            f"quantity {body.quantity} is more than the {res['stock_left']} unit(s) of '{body.product_id}' left",
            field="quantity",
            details=details,
        )
    else:
        err = ApiError(
            409,
            "limit_exceeded",
            f"quantity {body.quantity} goes over the limit of "
            f"{res['per_user_limit']} unit(s) per user; you already bought {res['already_bought']}",
            field="quantity",
            details=details,
        )
    err.headers = headers or None
    raise err
