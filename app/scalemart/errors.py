"""Every answer other than success: `ApiError`, the common ones, the exception handlers, the documented codes.

Each error is JSON `{"error", "message", "field", ...}` (models.ErrorOut) whose message names the field
at fault and the fix.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scalemart import metrics
from scalemart.models import ErrorOut

log = logging.getLogger("scalemart.api")


class ApiError(Exception):
    """An answer other than success; rendered as ErrorOut JSON."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.field = status, error, message, field
        self.details, self.headers = details, headers


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route that may answer these codes with ErrorOut."""
    return {code: {"model": ErrorOut} for code in codes}


# Every /api route may answer 422 (bad input) and 429 (rate limit); 400 is malformed JSON.
API_ERRORS = error_responses(400, 422, 429)
ADMIN_ERRORS = error_responses(401)
# A route that reads a body may also answer 413 (too large) and 415 (not sent as JSON): api.ObserveMiddleware.
BODY_ERRORS = error_responses(413, 415)


def redis_unavailable(what: str) -> ApiError:
    return ApiError(
        503,
        "stock_store_unavailable",
        f"{what} is not possible right now because Redis is unreachable; retry with the same "
        "idempotency key (it is safe: a purchase is never taken twice)",
        headers={"Retry-After": "5"},
    )


def mongo_unavailable(what: str) -> ApiError:
    return ApiError(
        503,
        "order_store_unavailable",
        f"{what} is not possible right now because MongoDB is unreachable; retry later",
        headers={"Retry-After": "5"},
    )


def unknown_product(product_id: str, hint: str = "list products with GET /api/products") -> ApiError:
    return ApiError(
        404, "unknown_product", f"product_id '{product_id}' is not a known product; {hint}", field="product_id"
    )


def product_incomplete(product_id: str) -> ApiError:
    return ApiError(
        409,
        "product_incomplete",
        f"product_id '{product_id}' has no stock record; repeat "
        "POST /api/admin/products with the same body to finish creating it",
        field="product_id",
    )


def rate_limited(limit: int, window: int, wait: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"more than {limit} requests in {window} s from this client; retry after {wait} s",
        headers={"Retry-After": str(wait)},
    )


def error_response(
    status: int,
    error: str,
    message: str,
    field: str | None = None,
    details: dict[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message, "field": field}
    if errors is not None:
        body["errors"] = errors
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


async def api_error_handler(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.message, exc.field, exc.details, headers=exc.headers)


# What injection looks like in an input the validation refused: a MongoDB operator as a key or a value, script
# or SQL shapes, Lua and Redis commands (and the CRLF that would smuggle one into the protocol), template
# expressions, path traversal. The refusal is already certain; this only counts it.
_INJECTION = re.compile(
    r"^\$[a-z]+$|\$(where|ne|gt|gte|lt|lte|in|nin|regex|expr|function)\b|<\s*script|"
    r"\bunion\s+select\b|'\s*or\s*'?1'?\s*=\s*'?1|;\s*drop\s+table|\{\{.*\}\}|\.\./|"
    r"\bredis\.p?call\b|\bflush(all|db)\b|\r\n",
    re.I,
)


def injection_in(value: Any, depth: int = 0) -> bool:
    """Whether a refused input carries an injection pattern (in its keys, its strings, nested)."""
    if depth > 8:
        return False
    if isinstance(value, str):
        return bool(_INJECTION.search(value))
    if isinstance(value, dict):
        return any(injection_in(k, depth + 1) or injection_in(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(injection_in(v, depth + 1) for v in value)
    return False


async def validation_error_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    # an operator may be the key itself ({"$where": ...} as an unknown field): that is in the error's location
    if any(
        injection_in(err.get("input")) or injection_in([str(p) for p in err.get("loc", ())]) for err in exc.errors()
    ):
        metrics.INJECTION_ATTEMPTS.inc()
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        if err.get("type") == "json_invalid":
            return error_response(
                400,
                "malformed_json",
                "the request body is not valid JSON: "
                f"{err.get('ctx', {}).get('error', 'parse error')}; send a JSON object",
                field="body",
            )
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
    return error_response(
        422, "validation_error", f"{first['field']}: {first['message']}", field=first["field"], errors=errors
    )


async def http_error_handler(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI could not read the body at all: not UTF-8, or nested past the parser
        return error_response(
            400,
            "malformed_body",
            f"the request body could not be read ({exc.detail}); send a JSON object encoded as UTF-8",
            field="body",
        )
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def unhandled_error_handler(_: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so Sentry (when configured) still records the error.
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "unexpected error; it has been logged")
