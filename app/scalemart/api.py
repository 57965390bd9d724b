"""The HTTP API. `create_app()` is the uvicorn factory used by `scalemart serve`."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scalemart import metrics, reconcile, store
from scalemart.models import (
    PRODUCT_ID,
    USER_ID,
    BuyIn,
    BuyOut,
    ErrorOut,
    Health,
    OrdersOut,
    ProductCreate,
    ProductList,
    ProductOut,
    ProductStats,
    ReconcileOut,
    RestockIn,
    SaleIn,
    StatsOut,
    StatsTotals,
)
from scalemart.settings import Settings, load_settings

log = logging.getLogger("scalemart.api")


class ApiError(Exception):
    """An answer other than success; rendered as ErrorOut JSON."""

    def __init__(self, status: int, error: str, message: str, field: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.field = status, error, message, field
        self.details, self.headers = details, headers


def error_response(status: int, error: str, message: str, field: str | None = None,
                   details: dict[str, Any] | None = None, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message, "field": field}
    if errors is not None:
        body["errors"] = errors
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def redis_unavailable(what: str) -> ApiError:
    return ApiError(503, "stock_store_unavailable",
                    f"{what} is not possible right now because Redis is unreachable; retry with the same "
                    "idempotency key (it is safe: a purchase is never taken twice)",
                    headers={"Retry-After": "5"})


def mongo_unavailable(what: str) -> ApiError:
    return ApiError(503, "order_store_unavailable", f"{what} is not possible right now because MongoDB is "
                    "unreachable; retry later", headers={"Retry-After": "5"})


def unknown_product(product_id: str, hint: str = "list products with GET /api/products") -> ApiError:
    return ApiError(404, "unknown_product", f"product_id '{product_id}' is not a known product; {hint}",
                    field="product_id")


def product_incomplete(product_id: str) -> ApiError:
    return ApiError(409, "product_incomplete", f"product_id '{product_id}' has no stock record; repeat "
                    "POST /api/admin/products with the same body to finish creating it", field="product_id")


def _e(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


BUY_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": BuyIn.model_json_schema()}}}}

# Every /api route may answer 422 (bad input) and 429 (rate limit); 400 is malformed JSON.
API_ERRORS = _e(400, 422, 429)
ADMIN_ERRORS = _e(401)


class State:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Any: redis-py types every reply as a sync/async union, which says nothing useful here
        self.redis: Any = store.redis_client(settings.redis_url)
        self.scripts = store.register_scripts(self.redis)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            # A generous socket timeout: a timed-out socket is closed and the next request pays a new
            # SCRAM handshake (costly on FerretDB), while the abandoned query keeps running server-side.
            settings.mongo_url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, socketTimeoutMS=30000,
            tz_aware=True)
        self.db = self.mongo[settings.mongo_db]
        self.local: dict[str, tuple[float, dict[str, Any]]] = {}
        self.local_list: tuple[float, list[dict[str, Any]]] | None = None
        self.last_stock: dict[str, tuple[int | None, int | None]] = {}
        self.rate_limit = settings.rate_limit_requests
        self.rate_window = settings.rate_limit_window_seconds
        self.idem_ttl = settings.idempotency_ttl_seconds
        self.buyer = store.BuyBatcher(self.scripts.buy, self.idem_ttl, self.rate_limit, self.rate_window,
                                      settings.user_orders_kept, settings.user_orders_ttl_days * 86400)


class ObserveMiddleware:
    """Request metrics by route template (never the raw path, so ids do not explode the label set)."""

    METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            await send(message)

        in_progress = metrics.HTTP_IN_PROGRESS.labels(method)
        in_progress.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            metrics.HTTP_REQUESTS.labels(template, method, str(status)).inc()
            metrics.HTTP_DURATION.labels(template, method).observe(time.perf_counter() - start)
            in_progress.dec()


def client_id(request: Request) -> str:
    # uvicorn has already replaced the peer with X-Forwarded-For when the peer is a trusted proxy.
    return request.client.host if request.client else "unknown"


def state_of(request: Request) -> State:
    return request.app.state.sm  # type: ignore[no-any-return]


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
        raise ApiError(429, "rate_limited", f"more than {st.rate_limit} requests in {st.rate_window} s from this "
                       f"client; retry after {wait} s", headers={"Retry-After": str(wait)})


async def require_admin(request: Request) -> None:
    st = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        metrics.LOGIN_FAILURES.inc()
        raise ApiError(401, "missing_credentials", "admin endpoints need the header "
                       "'Authorization: Bearer <SCALEMART_ADMIN_TOKEN>'", field="Authorization",
                       headers={"WWW-Authenticate": "Bearer"})
    expected = st.settings.admin_token.get_secret_value().encode()
    # compare bytes: compare_digest refuses non-ASCII str, and a header may carry anything
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("utf-8", "replace"), expected):
        metrics.LOGIN_FAILURES.inc()
        raise ApiError(401, "invalid_credentials", "the admin token is wrong; use the token generated at install "
                       "time (SCALEMART_ADMIN_TOKEN) as 'Authorization: Bearer <token>'", field="Authorization",
                       headers={"WWW-Authenticate": "Bearer"})


def _iso(epoch: int) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def _sale_open_now(doc: dict[str, Any], now: float) -> bool:
    starts, ends = doc.get("starts_at", 0), doc.get("ends_at", 0)
    return bool(doc.get("sale_open")) and (not starts or now >= starts) and (not ends or now < ends)


def catalogue_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The cached catalogue fields of a product (JSON-safe)."""
    return {"id": doc["_id"], "name": doc["name"], "price_cents": doc["price_cents"],
            "per_user_limit": doc["per_user_limit"], "sale_open": doc["sale_open"],
            "starts_at": doc.get("starts_at", 0), "ends_at": doc.get("ends_at", 0)}


def product_out(cat: dict[str, Any], stock: int | None, stocked: int | None, stale: bool) -> dict[str, Any]:
    open_now = _sale_open_now(cat, time.time())
    return {"id": cat["id"], "name": cat["name"], "price": store.cents_to_units(cat["price_cents"]),
            "per_user_limit": cat["per_user_limit"], "stock_left": stock, "stocked": stocked,
            "sale": {"open": cat["sale_open"], "starts_at": _iso(cat["starts_at"]), "ends_at": _iso(cat["ends_at"])},
            "on_sale": open_now and bool(stock), "stale": stale}


def _int(v: Any) -> int | None:
    return int(v) if v is not None and v is not False else None


async def read_product(st: State, product_id: str, count_view: bool) -> dict[str, Any]:
    try:
        cached, stock, stocked = await st.scripts.read(
            keys=[store.product_key(product_id), store.cache_key(product_id), store.VIEWS],
            args=["1" if count_view else "0", product_id])
    except store.REDIS_DOWN:
        return await read_product_fallback(st, product_id)
    stock, stocked = _int(stock), _int(stocked)
    if cached:
        metrics.CACHE_HITS.inc()
        cat = json.loads(cached)
    else:
        metrics.CACHE_MISSES.inc()
        try:
            doc = await st.db.products.find_one({"_id": product_id})
        except PyMongoError:
            raise mongo_unavailable("reading the catalogue") from None
        if doc is None:
            raise unknown_product(product_id)
        cat = catalogue_doc(doc)
        try:
            await st.redis.set(store.cache_key(product_id), store.dumps(cat),
                               px=int(st.settings.cache_ttl_seconds * 1000))
        except store.REDIS_DOWN:
            pass
    if count_view:
        metrics.PRODUCT_VIEWS.labels(product_id).inc()
    st.last_stock[product_id] = (stock, stocked)
    out = product_out(cat, stock, stocked, stale=False)
    st.local[product_id] = (time.monotonic() + st.settings.local_cache_ttl_seconds, out)
    return out


async def read_product_fallback(st: State, product_id: str) -> dict[str, Any]:
    hit = st.local.get(product_id)
    if hit and hit[0] > time.monotonic():
        return {**hit[1], "stale": True}
    try:
        doc = await st.db.products.find_one({"_id": product_id})
    except PyMongoError:
        if hit:  # both stores down: an old answer beats none for a read
            return {**hit[1], "stale": True}
        raise mongo_unavailable("reading the catalogue") from None
    if doc is None:
        raise unknown_product(product_id)
    stock, stocked = st.last_stock.get(product_id, (None, None))
    out = product_out(catalogue_doc(doc), stock, stocked, stale=True)
    st.local[product_id] = (time.monotonic() + st.settings.local_cache_ttl_seconds, {**out, "stale": False})
    return out


async def list_catalogue(st: State) -> tuple[list[dict[str, Any]], bool]:
    """Catalogue docs (cached in Redis) and whether Redis was unreachable."""
    try:
        cached = await st.redis.get(store.CATALOGUE_CACHE)
    except store.REDIS_DOWN:
        if st.local_list and st.local_list[0] > time.monotonic():
            return st.local_list[1], True
        cached = None
        redis_down = True
    else:
        redis_down = False
    if cached:
        metrics.CACHE_HITS.inc()
        return json.loads(cached), redis_down
    metrics.CACHE_MISSES.inc()
    try:
        docs = [catalogue_doc(d) async for d in st.db.products.find({}).sort("_id", 1).limit(1000)]
    except PyMongoError:
        if st.local_list:
            return st.local_list[1], True
        raise mongo_unavailable("listing the catalogue") from None
    st.local_list = (time.monotonic() + st.settings.local_cache_ttl_seconds, docs)
    if not redis_down:
        try:
            await st.redis.set(store.CATALOGUE_CACHE, store.dumps(docs), px=int(st.settings.cache_ttl_seconds * 1000))
        except store.REDIS_DOWN:
            redis_down = True
    return docs, redis_down


async def invalidate(st: State, product_id: str) -> None:
    await st.redis.delete(store.cache_key(product_id), store.CATALOGUE_CACHE)
    st.local.pop(product_id, None)
    st.local_list = None


async def stock_of(st: State, product_id: str) -> tuple[int | None, int | None]:
    stock, stocked = await st.redis.hmget(store.product_key(product_id), ["stock", "stocked"])
    return _int(stock), _int(stocked)


async def queue_snapshot(r: Any) -> tuple[int, float]:
    """Orders waiting in the stream and the age of the oldest one (0 when empty)."""
    pipe = r.pipeline(transaction=False)
    pipe.xlen(store.STREAM)
    pipe.xrange(store.STREAM, count=1)
    length, first = await pipe.execute()
    if not first:
        return int(length), 0.0
    first_ms = int(first[0][0].split("-")[0])
    return int(length), max(time.time() - first_ms / 1000, 0.0)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    if settings.sentry_dsn:
        import sentry_sdk

        sentry_sdk.init(dsn=settings.sentry_dsn, environment=settings.environment, release=settings.release_name,
                        traces_sample_rate=settings.sentry_traces_sample_rate, send_default_pii=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        st = State(settings)
        app.state.sm = st
        metrics.APP_INFO.labels(settings.release_name, settings.environment).set(1)
        try:
            await st.db.orders.create_index([("user_id", 1), ("created_at", -1)])
        except PyMongoError as exc:  # the API still serves purchases; the worker retries the index too
            log.warning("could not ensure the orders index (MongoDB unreachable?): %s", exc)
        yield
        await st.redis.aclose()
        await st.mongo.close()

    app = FastAPI(title="ScaleMart API", version=settings.release_name, lifespan=lifespan,
                  description="Flash-sale shop API: Redis-atomic stock, orders persisted to MongoDB by a worker.")
    app.add_middleware(ObserveMiddleware)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.field, exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
            if err.get("type") == "json_invalid":
                return error_response(400, "malformed_json", "the request body is not valid JSON: "
                                      f"{err.get('ctx', {}).get('error', 'parse error')}; send a JSON object",
                                      field="body")
            field = ".".join(loc) or "body"
            msg = err.get("msg", "invalid")
            if err.get("type") == "missing":
                msg = "is required"
            elif err.get("type") == "extra_forbidden":
                msg = "is not a known field; remove it"
            elif err.get("type") == "string_pattern_mismatch":
                msg = f"must match {err.get('ctx', {}).get('pattern')}"
            errors.append({"field": field, "message": msg})
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return error_response(422, "validation_error", f"{first['field']}: {first['message']}", field=first["field"],
                              errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so Sentry (when configured) still records the error.
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "unexpected error; it has been logged")

    limited = [Depends(rate_limit)]
    admin = [Depends(rate_limit), Depends(require_admin)]

    # --- health and metrics (not rate limited: probes and scrapers must always get through)
    @app.get("/health/live", response_model=Health, tags=["health"])
    async def live() -> dict[str, Any]:
        return {"status": "live"}

    @app.get("/health/ready", response_model=Health, responses={503: {"model": Health}}, tags=["health"])
    async def ready(request: Request) -> Any:
        st = state_of(request)
        checks: dict[str, str] = {}

        async def redis_check() -> None:
            try:
                await st.redis.ping()
                length, age = await queue_snapshot(st.redis)
            except store.REDIS_DOWN as exc:
                checks["redis"] = f"unreachable: {exc.__class__.__name__}"
                checks["worker_lag"] = "unknown (redis unreachable)"
                return
            checks["redis"] = "ok"
            bound = st.settings.ready_max_queue_age_seconds
            checks["worker_lag"] = "ok" if age <= bound else (
                f"oldest queued order is {age:.0f} s old (bound {bound:.0f} s); is `scalemart worker` running?")

        async def mongo_check() -> None:
            try:
                await st.mongo.admin.command("ping")
                checks["mongodb"] = "ok"
            except PyMongoError as exc:
                checks["mongodb"] = f"unreachable: {exc.__class__.__name__}"

        await asyncio.gather(redis_check(), mongo_check())
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        st = state_of(request)
        stock: dict[str, int] = {}
        active: int | None = None
        try:
            ids = sorted(await st.redis.smembers(store.PRODUCTS))
            pipe = st.redis.pipeline(transaction=False)
            for pid in ids:
                pipe.hget(store.product_key(pid), "stock")
            pipe.zremrangebyscore(store.ACTIVE_USERS, 0, time.time() * 1000 - store.ACTIVE_WINDOW_MS)
            pipe.zcard(store.ACTIVE_USERS)
            values = await pipe.execute()
            stock = {pid: int(v) for pid, v in zip(ids, values[:-2], strict=True) if v is not None}
            active = int(values[-1])
        except store.REDIS_DOWN:
            pass  # the scrape still returns the process metrics; the Redis-backed gauges are absent
        body = metrics.render(metrics.SnapshotCollector(stock, active))
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- catalogue
    @app.get("/api/products", response_model=ProductList, responses={**API_ERRORS, **_e(503)}, dependencies=limited,
             tags=["catalogue"])
    async def list_products(request: Request) -> dict[str, Any]:
        st = state_of(request)
        docs, stale = await list_catalogue(st)
        stocks: list[tuple[int | None, int | None]] = []
        if not stale and docs:
            try:
                pipe = st.redis.pipeline(transaction=False)
                for d in docs:
                    pipe.hmget(store.product_key(d["id"]), ["stock", "stocked"])
                stocks = [(_int(a), _int(b)) for a, b in await pipe.execute()]
                for d, s in zip(docs, stocks, strict=True):
                    st.last_stock[d["id"]] = s
            except store.REDIS_DOWN:
                stale = True
        if stale:
            stocks = [st.last_stock.get(d["id"], (None, None)) for d in docs]
        return {"products": [product_out(d, a, b, stale) for d, (a, b) in zip(docs, stocks, strict=True)],
                "stale": stale}

    @app.get("/api/products/{product_id}", response_model=ProductOut, responses={**API_ERRORS, **_e(404, 503)},
             dependencies=limited, tags=["catalogue"])
    async def get_product(request: Request, product_id: str = Path(pattern=PRODUCT_ID)) -> dict[str, Any]:
        return await read_product(state_of(request), product_id, count_view=True)

    # --- purchase
    @app.post("/api/buy", response_model=BuyOut, status_code=201, responses={**API_ERRORS, **_e(404, 409, 503)},
              tags=["purchase"], openapi_extra=BUY_REQUEST_BODY)
    async def buy(request: Request) -> Any:
        # The hot path: the body is validated straight from bytes by pydantic-core (FastAPI's generic
        # body handling costs more than the sale itself), and rate limiting happens inside the buy
        # script, so a purchase is one Redis round trip.
        try:
            body = BuyIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        st = state_of(request)
        fingerprint = f"{body.product_id}|{body.quantity}"
        try:
            kind, raw = await st.buyer.buy(body.user_id, body.product_id, body.quantity, uuid.uuid4().hex,
                                           body.idempotency_key, client_id(request))
        except store.REDIS_DOWN:
            raise redis_unavailable("buying") from None
        res = json.loads(raw)
        result = res["result"]
        headers: dict[str, str] = {}
        if kind == "replay":
            if res.get("fingerprint") != fingerprint:
                raise ApiError(409, "idempotency_key_reused", "this idempotency_key was already used by this user "
                               "for a different product or quantity; use a new key for a new purchase",
                               field="idempotency_key")
            metrics.PURCHASE_ATTEMPTS.labels(body.product_id, "duplicate").inc()
            headers["Idempotent-Replayed"] = "true"
        elif result == "rate_limited":
            metrics.RATE_LIMITED.inc()
            wait = max(int(res.get("retry_after", 1)), 1)
            raise ApiError(429, "rate_limited", f"more than {st.rate_limit} requests in {st.rate_window} s from "
                           f"this client; retry after {wait} s", headers={"Retry-After": str(wait)})
        elif result == "unknown_product":
            raise unknown_product(body.product_id)
        else:
            metrics.PURCHASE_ATTEMPTS.labels(body.product_id, result).inc()
            if result == "success":
                metrics.ORDERS.labels(body.product_id).inc()
                metrics.REVENUE.inc(res["total_cents"] / 100)
        if result == "success":
            out = {"order_id": res["order_id"], "status": "accepted", "user_id": body.user_id,
                   "product_id": body.product_id, "quantity": body.quantity,
                   "unit_price": store.cents_to_units(res["unit_price_cents"]),
                   "total": store.cents_to_units(res["total_cents"]), "stock_left": res["stock_left"],
                   "created_at": datetime.fromtimestamp(res["created_at_ms"] / 1000, UTC).isoformat()}
            return JSONResponse(out, status_code=201, headers=headers)
        details = {k: v for k, v in res.items() if k in ("stock_left", "already_bought", "per_user_limit")}
        if result == "closed":
            err = ApiError(409, "sale_closed", f"product_id '{body.product_id}' is not on sale now; check its sale "
                           f"window with GET /api/products/{body.product_id}", field="product_id", details=details)
        elif result == "out_of_stock":
            err = ApiError(409, "out_of_stock", f"quantity {body.quantity} is more than the {res['stock_left']} "
                           f"unit(s) of '{body.product_id}' left", field="quantity", details=details)
        else:
            err = ApiError(409, "limit_exceeded", f"quantity {body.quantity} goes over the limit of "
                           f"{res['per_user_limit']} unit(s) per user; you already bought {res['already_bought']}",
                           field="quantity", details=details)
        err.headers = headers or None
        raise err

    # --- orders
    @app.get("/api/users/{user_id}/orders", response_model=OrdersOut, responses={**API_ERRORS, **_e(503)},
             dependencies=limited, tags=["orders"])
    async def user_orders(request: Request, user_id: str = Path(pattern=USER_ID),
                          limit: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        st = state_of(request)
        try:
            pipe = st.redis.pipeline(transaction=False)
            pipe.zadd(store.ACTIVE_USERS, {user_id: int(time.time() * 1000)})
            pipe.lrange(store.user_orders_key(user_id), 0, limit - 1)
            _, raw = await pipe.execute()
        except store.REDIS_DOWN:
            return await _orders_from_mongo(st, user_id, limit)
        orders = [json.loads(item) for item in raw]
        return {"user_id": user_id, "source": "redis", "orders": [
            _order_out(o["order_id"], user_id, o, datetime.fromtimestamp(o["created_at_ms"] / 1000, UTC))
            for o in orders]}

    # --- admin
    @app.post("/api/admin/products", response_model=ProductOut, status_code=201,
              responses={**API_ERRORS, **ADMIN_ERRORS, **_e(409, 503)}, dependencies=admin, tags=["admin"])
    async def create_product(request: Request, body: ProductCreate) -> Any:
        st = state_of(request)
        starts, ends = body.epochs()
        limit = body.per_user_limit or st.settings.default_per_user_limit
        doc: dict[str, Any] = {
            "_id": body.id, "name": body.name, "price_cents": body.price_cents, "per_user_limit": limit,
            "sale_open": body.open, "starts_at": starts, "ends_at": ends, "initial_stock": body.stock,
            "created_at": datetime.now(UTC)}
        try:
            await st.db.products.insert_one(doc)
        except DuplicateKeyError:
            # A create that failed half-way (Redis down after the insert) is finished by retrying it.
            try:
                exists = await st.redis.exists(store.product_key(body.id))
            except store.REDIS_DOWN:
                raise redis_unavailable("creating a product") from None
            if exists:
                raise ApiError(409, "product_exists", f"id '{body.id}' is already a product; restock it with "
                               f"POST /api/admin/products/{body.id}/restock", field="id") from None
            try:
                doc = await st.db.products.find_one({"_id": body.id}) or doc
            except PyMongoError:
                raise mongo_unavailable("creating a product") from None
        except PyMongoError:
            raise mongo_unavailable("creating a product") from None
        try:
            await st.scripts.create(keys=[store.product_key(body.id)],
                                    args=[doc["initial_stock"], doc["price_cents"], doc["per_user_limit"],
                                          int(doc["sale_open"]), doc["starts_at"], doc["ends_at"]])
            await st.redis.sadd(store.PRODUCTS, body.id)
            await invalidate(st, body.id)
            stock, stocked = await stock_of(st, body.id)
        except store.REDIS_DOWN:
            raise redis_unavailable("creating a product (retry the same request to finish it)") from None
        return JSONResponse(_json(product_out(catalogue_doc(doc), stock, stocked, False)), status_code=201)

    @app.post("/api/admin/products/{product_id}/restock", response_model=ProductOut,
              responses={**API_ERRORS, **ADMIN_ERRORS, **_e(404, 503)}, dependencies=admin, tags=["admin"])
    async def restock(request: Request, body: RestockIn, product_id: str = Path(pattern=PRODUCT_ID)) -> Any:
        st = state_of(request)
        doc = await _catalogue_or_404(st, product_id)
        try:
            res = await st.scripts.restock(keys=[store.product_key(product_id)], args=[body.quantity])
            if res == -1:
                raise product_incomplete(product_id)
            await invalidate(st, product_id)
        except store.REDIS_DOWN:
            raise redis_unavailable("restocking") from None
        return product_out(catalogue_doc(doc), int(res[0]), int(res[1]), False)

    @app.post("/api/admin/products/{product_id}/sale", response_model=ProductOut,
              responses={**API_ERRORS, **ADMIN_ERRORS, **_e(404, 409, 503)}, dependencies=admin, tags=["admin"])
    async def sale(request: Request, body: SaleIn, product_id: str = Path(pattern=PRODUCT_ID)) -> Any:
        st = state_of(request)
        await _catalogue_or_404(st, product_id)
        starts, ends = body.epochs()
        is_open = body.action == "open"
        try:
            doc = await st.db.products.find_one_and_update(
                {"_id": product_id}, {"$set": {"sale_open": is_open, "starts_at": starts, "ends_at": ends}},
                return_document=True)
        except PyMongoError:
            raise mongo_unavailable("changing the sale") from None
        if doc is None:  # deleted between the two calls
            raise unknown_product(product_id)
        try:
            if await st.scripts.sale(keys=[store.product_key(product_id)], args=[int(is_open), starts, ends]) == -1:
                raise product_incomplete(product_id)
            await invalidate(st, product_id)
            stock, stocked = await stock_of(st, product_id)
        except store.REDIS_DOWN:
            raise redis_unavailable("changing the sale (retry the same request)") from None
        return product_out(catalogue_doc(doc), stock, stocked, False)

    @app.get("/api/admin/stats", response_model=StatsOut, responses={**API_ERRORS, **ADMIN_ERRORS, **_e(503)},
             dependencies=admin, tags=["admin"])
    async def stats(request: Request) -> dict[str, Any]:
        # Orders and revenue are counted by the buy script with the sale itself: live, exact, and no
        # scan of the orders in MongoDB (`GET /api/admin/reconcile` checks MongoDB against them).
        # The product list is the cached catalogue, as for GET /api/products: a stats poll during a
        # sale must not scan MongoDB's products each time.
        st = state_of(request)
        products, redis_down = await list_catalogue(st)
        if redis_down:
            raise redis_unavailable("computing stats")
        try:
            pipe = st.redis.pipeline(transaction=False)
            for p in products:
                pipe.hmget(store.product_key(p["id"]), ["stock", "stocked", "orders", "revenue_cents"])
            pipe.hgetall(store.VIEWS)
            pipe.xlen(store.STREAM)
            *counters, views, queued = await pipe.execute()
        except store.REDIS_DOWN:
            raise redis_unavailable("computing stats") from None
        rows = []
        for p, (stock, stocked, n_orders, revenue_cents) in zip(products, counters, strict=True):
            stock_i, stocked_i = _int(stock), _int(stocked)
            n_views = int(views.get(p["id"], 0))
            n_orders = int(n_orders or 0)
            rows.append({
                "product_id": p["id"], "name": p["name"], "orders": n_orders,
                "units_sold": stocked_i - stock_i if stocked_i is not None and stock_i is not None else 0,
                "revenue": store.cents_to_units(int(revenue_cents or 0)), "stocked": stocked_i,
                "stock_left": stock_i,
                "sell_through": (round((stocked_i - stock_i) / stocked_i, 4)
                                 if stocked_i and stock_i is not None else None),
                "views": n_views, "conversion": round(n_orders / n_views, 4) if n_views else None})
        total_orders = sum(r["orders"] for r in rows)
        total_views = sum(r["views"] for r in rows)
        totals = StatsTotals(orders=total_orders, units_sold=sum(r["units_sold"] for r in rows),
                             revenue=round(sum(r["revenue"] for r in rows), 2), views=total_views,
                             conversion=round(total_orders / total_views, 4) if total_views else None,
                             queued_orders=int(queued))
        return {"products": [ProductStats(**r) for r in rows], "totals": totals}

    @app.get("/api/admin/reconcile", response_model=ReconcileOut,
             responses={**API_ERRORS, **ADMIN_ERRORS, **_e(503)}, dependencies=admin, tags=["admin"])
    async def reconcile_endpoint(request: Request, product_id: str | None = Query(default=None, pattern=PRODUCT_ID),
                                 require_drained: bool = False) -> dict[str, Any]:
        """`scalemart reconcile` over HTTP: reads every order in MongoDB (slow with many; not for dashboards)."""
        st = state_of(request)
        try:
            rows = await asyncio.to_thread(reconcile.collect, st.settings, product_id)
        except store.REDIS_DOWN:
            raise redis_unavailable("reconciling") from None
        except PyMongoError:
            raise mongo_unavailable("reconciling") from None
        out = [{**dataclasses.asdict(r), "taken": r.taken, "problems": r.problems(require_drained)} for r in rows]
        return {"clean": not any(r["problems"] for r in out), "products": out}

    return app


async def _orders_from_mongo(st: State, user_id: str, limit: int) -> dict[str, Any]:
    """The orders endpoint's fallback while Redis is down: persisted orders only, and a scan on FerretDB."""
    try:
        docs = [d async for d in st.db.orders.find({"user_id": user_id}).sort("created_at", -1).limit(limit)]
    except PyMongoError:
        raise mongo_unavailable("listing orders") from None
    return {"user_id": user_id, "source": "mongodb",
            "orders": [_order_out(d["_id"], user_id, d, d["created_at"]) for d in docs]}


def _order_out(order_id: str, user_id: str, o: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """One OrderOut from a Redis list entry or a MongoDB document (they share the cents fields)."""
    return {"order_id": order_id, "user_id": user_id, "product_id": o["product_id"], "quantity": o["quantity"],
            "unit_price": store.cents_to_units(o["unit_price_cents"]), "total": store.cents_to_units(o["total_cents"]),
            "created_at": created_at}


async def _catalogue_or_404(st: State, product_id: str) -> dict[str, Any]:
    try:
        doc = await st.db.products.find_one({"_id": product_id})
    except PyMongoError:
        raise mongo_unavailable("reading the catalogue") from None
    if doc is None:
        raise unknown_product(product_id, "create it with POST /api/admin/products")
    return doc


def _json(out: dict[str, Any]) -> dict[str, Any]:
    sale = out["sale"]
    return {**out, "sale": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in sale.items()}}

