"""The analytics console's HTML side: login form, logout, the dashboard page, its sparklines and static files.

The page is a server-rendered skeleton; analytics.js fills its five sections from the JSON API
(scalemart.analytics.api) every few seconds. Everything it loads comes from this app, so it works
air-gapped. `mount(app)` adds the static files; the routes are in `router`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any, get_args
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from scalemart import metrics
from scalemart.analytics import figures, session, sparkline
from scalemart.deps import rate_limit, state_of
from scalemart.errors import ApiError

DASHBOARD_URL = "/analytics/dashboard"
FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 4096
WINDOWS: tuple[str, ...] = get_args(figures.Window)  # what the performance endpoint accepts
POLL_SECONDS = 5
# The page loads nothing from elsewhere and runs no inline script, so the policy can be this strict.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


SPARKLINES: dict[str, tuple[str, Callable[[float], str]]] = {
    "requests_per_minute": ("Requests per minute, last hour", lambda v: f"{_number(v)}/min"),
    "p95_seconds": ("p95 latency, last hour", lambda v: f"{_number(v * 1000)} ms"),
}


router = APIRouter(include_in_schema=False, tags=["analytics"])
templates = Environment(
    loader=PackageLoader("scalemart.analytics", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)


class _NamedMount(Mount):
    """A Mount that names itself in the scope as an APIRoute does: ObserveMiddleware then labels its requests
    route="/analytics/static", not "<unmatched>", which the console would count as shop traffic."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def mount(app: FastAPI) -> None:
    """Serve analytics.js and analytics.css at /analytics/static/ (files shipped in the wheel)."""
    app.router.routes.append(
        _NamedMount(
            "/analytics/static", StaticFiles(packages=[("scalemart.analytics", "static")]), name="analytics-static"
        )
    )


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings = state_of(request).settings
    html = templates.get_template(name).render(
        environment=settings.environment, version=settings.release_name, **context
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _to_login(request: Request) -> RedirectResponse:
    response = RedirectResponse(session.LOGIN_URL, status_code=303, headers={"Cache-Control": "no-store"})
    if session.COOKIE in request.cookies:
        session.end(request, response)
    return response


@router.get("/analytics")
async def home() -> RedirectResponse:
    return RedirectResponse(DASHBOARD_URL, status_code=303)


@router.get("/analytics/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", error=None)


@router.post("/analytics/login", dependencies=[Depends(rate_limit)])
async def login(request: Request) -> Response:
    """Check the admin token from the form; on success set the session cookie and go to the dashboard."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != FORM:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"POST /analytics/login takes the field token with "
            f"Content-Type {FORM} (as the login form sends it), not '{content_type or 'none'}'",
            field="Content-Type",
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(
            413,
            "body_too_large",
            f"the login form body is {len(body)} bytes, more than {MAX_FORM_BYTES}; send only the field token",
            field="body",
        )
    token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
    expected = state_of(request).settings.admin_token.get_secret_value().encode()
    # bytes: compare_digest refuses non-ASCII str, and a form may carry anything
    if not hmac.compare_digest(token.encode("utf-8", "replace"), expected):
        metrics.LOGIN_FAILURES.inc()
        error = (
            "that is not the admin token; use SCALEMART_ADMIN_TOKEN (`make credentials` prints it)"
            if token
            else "enter the admin token (SCALEMART_ADMIN_TOKEN; `make credentials` prints it)"
        )
        return _page(request, "login.html", status=401, error=error)
    response = RedirectResponse(DASHBOARD_URL, status_code=303, headers={"Cache-Control": "no-store"})
    session.start(request, response)
    return response


@router.post("/analytics/logout")
async def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse(session.LOGIN_URL, status_code=303, headers={"Cache-Control": "no-store"})
    session.end(request, response)
    return response


@router.get("/analytics/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    """The console, or the login form when the session is missing or no longer valid.

    A browser that has no session yet is not a failed login, so this redirect is not counted in
    scalemart_login_failures_total (the login form and the API count theirs)."""
    if session.check(request) is not session.Check.OK:
        return _to_login(request)
    return _page(
        request,
        "dashboard.html",
        windows=WINDOWS,
        poll_ms=POLL_SECONDS * 1000,
        sparklines=[(name, title) for name, (title, _) in SPARKLINES.items()],
    )


def _svg(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/analytics/sparkline/{name}.svg", dependencies=[Depends(rate_limit), Depends(session.require_viewer)])
async def sparkline_svg(request: Request, name: str) -> Response:
    """The last hour of one performance series as an SVG; an SVG saying so when Prometheus is down."""
    if name not in SPARKLINES:
        raise ApiError(
            404,
            "unknown_sparkline",
            f"name '{name}' is not a sparkline; use one of {', '.join(sorted(SPARKLINES))}",
            field="name",
        )
    title, label = SPARKLINES[name]
    try:
        performance = await figures.performance(state_of(request), "5m")
    except ApiError as exc:
        if exc.status != 503:
            raise
        return _svg(sparkline.message(title, "Prometheus unreachable"), status=503)
    points = (performance.get("sparklines") or {}).get(name) or []
    now = time.time()
    return _svg(sparkline.render(title, points, label, span=(now - figures.SPARKLINE_SECONDS, now)))
