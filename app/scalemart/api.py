"""The HTTP API. `create_app()` is the uvicorn factory used by `scalemart serve`.

The routes live in `scalemart.routes` (one router per resource), their dependencies in `deps`,
their MongoDB access in `queries`, their errors in `errors`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scalemart import errors, metrics
from scalemart.analytics import api as analytics_api
from scalemart.analytics import page as analytics_page
from scalemart.routes import admin, catalogue, health, orders, purchase
from scalemart.settings import Settings, load_settings
from scalemart.state import State

log = logging.getLogger("scalemart.api")
_OPERATOR_NAME = re.compile(r"[\[\]$]")


class ObserveMiddleware:
    """Request metrics by route template (never the raw path, so ids do not explode the label set), the
    security headers of every answer, and the API's refusals of what it will not read: a body not sent as
    JSON (415, a cross-site form cannot send application/json without a CORS preflight), a body too large
    (413, counted; a chunked body, which declares no length, is read up to the limit first) and a query
    parameter named like a MongoDB operator (422, counted as an injection attempt)."""

    METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
    BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
    # What a JSON API answers a browser with; a route that sets one of them (the console's pages) keeps its own.
    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
        (b"cross-origin-resource-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in self.METHODS else "OTHER"
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                present = {name for name, _ in headers}
                headers.extend(h for h in self.HEADERS if h[0] not in present)
            await send(message)

        in_progress = metrics.HTTP_IN_PROGRESS.labels(method)
        in_progress.inc()
        start = time.perf_counter()
        try:
            refusal = self._refusal(scope) if method in self.BODY_METHODS else None
            if refusal is None and scope["query_string"]:
                refusal = self._query_refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_status)
            elif method in self.BODY_METHODS and not any(name == b"content-length" for name, _ in scope["headers"]):
                await self._bounded(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            metrics.HTTP_REQUESTS.labels(template, method, str(status)).inc()
            metrics.HTTP_DURATION.labels(template, method).observe(time.perf_counter() - start)
            in_progress.dec()

    def _refusal(self, scope: Scope) -> ASGIApp | None:
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return self._too_large(f"{int(length)} bytes")
        if not scope["path"].startswith("/api/"):
            return None  # the console's login form is form-encoded
        media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if media != b"application/json":
            shown = media.decode("latin-1") or "none"
            return errors.error_response(
                415,
                "unsupported_media_type",
                f"the body must be JSON sent as 'Content-Type: application/json' (got {shown})",
                field="Content-Type",
            )
        return None

    def _too_large(self, size: str) -> ASGIApp:
        metrics.OVERSIZED_BODIES.inc()
        return errors.error_response(
            413,
            "body_too_large",
            f"the body is {size}; this API takes at most {self.max_body_bytes} bytes (SCALEMART_MAX_BODY_BYTES)",
            field="body",
        )

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Without Content-Length nothing stops a chunked body from growing without end in the route's
        # memory: read it here up to the limit, then hand the app the same messages.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                await self._too_large(f"over {self.max_body_bytes} bytes (sent chunked)")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _query_refusal(scope: Scope) -> ASGIApp | None:
        # No parameter of this API is named with brackets or `$`: `user_id[$ne]=x` is what a query-string parser
        # of the qs kind turns into {"user_id": {"$ne": "x"}}, so it is refused, not silently ignored.
        query = scope["query_string"].decode("latin-1")
        for name, _ in parse_qsl(query, keep_blank_values=True):
            if _OPERATOR_NAME.search(name):
                metrics.INJECTION_ATTEMPTS.inc()
                message = (
                    f"query parameter {name!r} is not a parameter of this API (brackets and '$' operators "
                    "are refused); send plain name=value parameters as /openapi.json lists them"
                )
                return errors.error_response(
                    422,
                    "validation_error",
                    message,
                    field=name,
                    errors=[{"field": name, "message": "is not a known parameter"}],
                )
        return None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    if settings.sentry_dsn:
        import sentry_sdk

        sentry_sdk.init(
            dsn=settings.sentry_dsn,
            environment=settings.environment,
            release=settings.release_name,
            traces_sample_rate=settings.sentry_traces_sample_rate,
            send_default_pii=False,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st = State(settings)
        app.state.sm = st
        metrics.APP_INFO.labels(settings.release_name, settings.environment).set(1)
        try:
            await st.db.orders.create_index([("user_id", 1), ("created_at", -1)])
        except PyMongoError as exc:  # the API still serves purchases; the worker retries the index too
            log.warning("could not ensure the orders index (MongoDB unreachable?): %s", exc)
        yield
        await st.aclose()

    app = FastAPI(
        title="ScaleMart API",
        version=settings.release_name,
        lifespan=lifespan,
        description="Flash-sale shop API: Redis-atomic stock, orders persisted to MongoDB by a worker.",
        exception_handlers={
            errors.ApiError: errors.api_error_handler,
            RequestValidationError: errors.validation_error_handler,
            StarletteHTTPException: errors.http_error_handler,
            Exception: errors.unhandled_error_handler,
        },
    )
    app.add_middleware(ObserveMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_allow_origins:  # the shop's own front end only; no CORS at all by default
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    # The routers' routes go onto the app itself rather than through include_router, which since
    # FastAPI 0.137 keeps each router as a node that every request is matched through again: +43 %
    # function calls on POST /api/buy. An APIRoute already carries its router's tags, dependencies
    # and responses, and the paths are written out in full, so nothing else changes (except that
    # app.dependency_overrides would not reach them: nothing here uses it).
    for module in (health, catalogue, purchase, orders, admin, analytics_api, analytics_page):
        app.router.routes.extend(module.router.routes)
    analytics_page.mount(app)
    return app
