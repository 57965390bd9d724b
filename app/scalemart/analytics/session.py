"""The analytics console's login session: a signed, expiring cookie, and `require_viewer` for its routes.

The cookie carries no secret and no server-side state: it is a timestamp signed (itsdangerous) with a key
derived from the admin token, so rotating SCALEMART_ADMIN_TOKEN ends every session at once. Logging out
clears the browser's cookie; a copy taken before stays valid until it expires
(SCALEMART_ANALYTICS_SESSION_SECONDS).
"""

from __future__ import annotations

import hmac
from enum import Enum

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from scalemart import metrics
from scalemart.deps import require_admin, state_of
from scalemart.errors import ApiError
from scalemart.settings import Settings

COOKIE = "scalemart_session"
PATH = "/analytics"
LOGIN_URL = "/analytics/login"
_PURPOSE = b"scalemart-analytics-session"
_SUBJECT = "admin"


class Check(Enum):
    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"


def serializer(settings: Settings) -> URLSafeTimedSerializer:
    # A derived key, not the token itself: the cookie's signature must not be an oracle for the API token.
    key = hmac.new(settings.admin_token.get_secret_value().encode(), _PURPOSE, "sha256").digest()
    return URLSafeTimedSerializer(key, salt=_PURPOSE.decode())


def check(request: Request) -> Check:
    """What the request's session cookie is worth."""
    value = request.cookies.get(COOKIE)
    if not value:
        return Check.MISSING
    settings = state_of(request).settings
    try:
        subject = serializer(settings).loads(value, max_age=settings.analytics_session_seconds)
    except SignatureExpired:
        return Check.EXPIRED
    except BadSignature:
        return Check.INVALID
    return Check.OK if subject == _SUBJECT else Check.INVALID


def start(request: Request, response: Response) -> None:
    """Set a fresh session cookie on `response`."""
    settings = state_of(request).settings
    seconds = settings.analytics_session_seconds
    response.set_cookie(
        COOKIE,
        serializer(settings).dumps(_SUBJECT),
        max_age=seconds,
        expires=seconds,
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def end(request: Request, response: Response) -> None:
    """Clear the session cookie (same attributes, or the browser keeps it)."""
    response.delete_cookie(COOKIE, path=PATH, secure=request.url.scheme == "https", httponly=True, samesite="strict")


async def require_viewer(request: Request) -> None:
    """The analytics routes' credential: the admin Bearer token (as `require_admin`) or a session cookie.

    An Authorization header decides alone, so a script with a wrong token is refused even if it also
    sends a cookie. Every refusal counts in scalemart_login_failures_total, a missing credential too,
    as require_admin counts it: the console's script stops polling and goes to the login form at the
    first 401, so an expired session costs at most one refusal per endpoint.
    """
    if request.headers.get("authorization"):
        await require_admin(request)
        return
    found = check(request)
    if found is Check.OK:
        return
    metrics.LOGIN_FAILURES.inc()
    if found is Check.MISSING:
        raise ApiError(
            401,
            "missing_credentials",
            "the analytics API needs the header 'Authorization: Bearer "
            f"<SCALEMART_ADMIN_TOKEN>' or a session: log in at {LOGIN_URL}",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    reason = "has expired" if found is Check.EXPIRED else "is not valid (tampered with, or the admin token changed)"
    raise ApiError(
        401,
        "invalid_credentials",
        f"the session cookie {COOKIE} {reason}; log in again at {LOGIN_URL}",
        field=COOKIE,
        headers={"WWW-Authenticate": "Bearer"},
    )
