"""Typed dependencies of the routes: the process state, the per-client rate limit, the admin token, the buyer."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path, Request

from scalemart import metrics, store, tokens
from scalemart.errors import ApiError, rate_limited
from scalemart.models import PRODUCT_ID, USER_ID
from scalemart.state import State


def state_of(request: Request) -> State:
    """The process state, read from the request; routes take it as StateDep."""
    return request.app.state.sm  # type: ignore[no-any-return]


async def _state(request: Request) -> State:
    # async: FastAPI runs a plain-function dependency in a worker thread
    return state_of(request)


StateDep = Annotated[State, Depends(_state)]
ProductId = Annotated[str, Path(pattern=PRODUCT_ID)]
UserId = Annotated[str, Path(pattern=USER_ID)]


def client_id(request: Request) -> str:
    # uvicorn has already replaced the peer with X-Forwarded-For when the peer is a trusted proxy.
    return request.client.host if request.client else "unknown"


# rate_limit and require_admin need the request anyway and take the state from it: a StateDep
# here would be one more dependency to resolve on every /api request (about 60 function calls).
async def rate_limit(request: Request) -> None:
    st = state_of(request)
    if st.rate_limit <= 0:
        return
    try:
        wait = await st.scripts.rate(keys=[store.rate_key(client_id(request))], args=[st.rate_limit, st.rate_window])
    except store.REDIS_DOWN:
        return  # fail open: reads must keep working while Redis is down
    if wait:
        metrics.RATE_LIMITED.inc()
        raise rate_limited(st.rate_limit, st.rate_window, wait)


async def require_admin(request: Request) -> None:
    st = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        metrics.LOGIN_FAILURES.inc()
        raise ApiError(
            401,
            "missing_credentials",
            "admin endpoints need the header 'Authorization: Bearer <SCALEMART_ADMIN_TOKEN>'",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = st.settings.admin_token.get_secret_value().encode()
    # compare bytes: compare_digest refuses non-ASCII str, and a header may carry anything
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("utf-8", "replace"), expected):
        metrics.LOGIN_FAILURES.inc()
        raise ApiError(
            401,
            "invalid_credentials",
            "the admin token is wrong; use the token generated at install "
            "time (SCALEMART_ADMIN_TOKEN) as 'Authorization: Bearer <token>'",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _token_user(request: Request) -> str:
    """The user the request's buyer token names (`Authorization: Bearer <token>`); TokenError with the reason."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise tokens.TokenError(
            "missing",
            "buying and reading your orders need the header "
            "'Authorization: Bearer <buyer token>' from the shop's login",
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise tokens.TokenError("malformed", "the Authorization header must be 'Bearer <buyer token>'")
    return tokens.verify(state_of(request).buyer_key, token.strip())


def buyer_of(request: Request) -> str:
    """The user the request's buyer token names; 401 with the reason, counted in scalemart_token_failures_total,
    otherwise. Plain (not async): the buy route calls it inline."""
    try:
        return _token_user(request)
    except tokens.TokenError as exc:
        metrics.TOKEN_FAILURES.labels(exc.reason).inc()
        raise ApiError(
            401,
            "missing_token" if exc.reason == "missing" else "invalid_token",
            f"Authorization: {exc}",
            field="Authorization",
            details={"reason": exc.reason},
            headers={"WWW-Authenticate": "Bearer"},
        ) from None


async def _buyer(request: Request) -> str:
    return buyer_of(request)


def _valid_buyer(request: Request) -> str | None:
    """The user of the request's buyer token if it is a valid one, else None (not counted: the caller answers)."""
    try:
        return _token_user(request)
    except tokens.TokenError:
        return None


async def require_admin_not_buyer(request: Request) -> None:
    """require_admin for any user's orders, a route a buyer may take for their own: a valid buyer token there is
    403 (the buyer is known, only not allowed), a missing or wrong credential 401 as on every admin route. Each
    refusal counts in scalemart_login_failures_total, as every admin request without the admin token does."""
    try:
        await require_admin(request)
    except ApiError as exc:
        user = _valid_buyer(request) if exc.error == "invalid_credentials" else None
        if user is None:
            raise
        raise ApiError(
            403,
            "admin_only",
            f"another user's orders are admin-only; the buyer token (user '{user}') reads its own with "
            "GET /api/users/me/orders, any user's need 'Authorization: Bearer <SCALEMART_ADMIN_TOKEN>'",
            field="Authorization",
        ) from None


BuyerDep = Annotated[str, Depends(_buyer)]

# Route dependencies: every /api route but POST /api/buy is rate limited here (the buy script
# applies the same budget itself); admin routes need the token as well, checked after the limit.
LIMITED = [Depends(rate_limit)]
ADMIN = [Depends(rate_limit), Depends(require_admin)]
# Any user's orders: admin only, and a buyer's own token is told so with 403.
ADMIN_NOT_BUYER = [Depends(rate_limit), Depends(require_admin_not_buyer)]
