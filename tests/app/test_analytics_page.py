"""The analytics console's HTML side: login, session cookie, logout, the dashboard page, sparklines, static files.

The real app (two uvicorn workers) without Prometheus or Alertmanager configured: the page and the login
need neither, and the sparklines must then say that Prometheus is unreachable. The browser tour with
real sources is test_analytics_browser.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from pydantic import SecretStr
from scalemart.analytics import session, sparkline
from scalemart.settings import Settings

from tests.app.conftest import ADMIN_TOKEN, AppServer, assert_error
from tests.app.test_metrics import samples, value

LOGIN, DASHBOARD, LOGOUT = "/analytics/login", "/analytics/dashboard", "/analytics/logout"
FORM = {"content-type": "application/x-www-form-urlencoded"}
SECTIONS = ("system", "performance", "business", "users", "alerts")


def failures(c: httpx.Client) -> float:
    return value(samples(c.get("/metrics").text), "scalemart_login_failures_total")


def set_cookie(r: httpx.Response) -> Any:
    """The response's session cookie as http.cookies parses it (attributes included)."""
    jar: SimpleCookie = SimpleCookie()
    for header in r.headers.get_list("set-cookie"):
        jar.load(header)
    assert session.COOKIE in jar, r.headers.get_list("set-cookie")
    return jar[session.COOKIE]


def log_in(server: AppServer) -> httpx.Client:
    c = server.client()
    r = c.post(LOGIN, content=f"token={ADMIN_TOKEN}", headers=FORM)
    assert r.status_code == 303, r.text
    return c


def cookie_signed(settings: Settings, seconds_ago: int = 0, token: str | None = None) -> str:
    """A session cookie value as the app signs it, dated `seconds_ago` (itsdangerous's own signer)."""
    if token is not None:
        settings = settings.model_copy(update={"admin_token": SecretStr(token)})

    class Dated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_ago

    s = session.serializer(settings)
    s.signer = Dated
    return s.dumps("admin")


@pytest.fixture(scope="module")
def settings(shared_app: AppServer) -> Settings:
    return shared_app.env.settings()  # type: ignore[no-any-return]


@pytest.fixture
def viewer(shared_app: AppServer) -> Iterator[httpx.Client]:
    c = log_in(shared_app)
    yield c
    c.close()


# --- login form
def test_login_form_is_html_posting_the_token_with_a_strict_policy(anon: httpx.Client) -> None:
    r = anon.get(LOGIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert re.search(r'<form[^>]+method="post"[^>]+action="/analytics/login"', r.text)
    assert 'name="token"' in r.text and 'type="password"' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"


# explicit ids: ADMIN_TOKEN is random per process, and pytest-xdist's workers must collect the same names
@pytest.mark.parametrize(
    "token",
    ["wrong-token-value-123", "", "ünïcode", ADMIN_TOKEN + "x"],
    ids=["wrong", "empty", "non-ascii", "admin-token-plus-one"],
)
def test_wrong_token_is_401_with_the_form_and_a_message_and_counts_a_failed_login(
    anon: httpx.Client, token: str
) -> None:
    before = failures(anon)
    r = anon.post(LOGIN, data={"token": token})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in r.text and "admin token" in r.text and 'name="token"' in r.text
    assert session.COOKIE not in r.headers.get("set-cookie", "")
    assert failures(anon) == before + 1


def test_right_token_sets_an_httponly_strict_expiring_cookie_and_goes_to_the_dashboard(
    anon: httpx.Client, settings: Settings
) -> None:
    before = failures(anon)
    r = anon.post(
        LOGIN, content=f"token={ADMIN_TOKEN}", headers={"content-type": FORM["content-type"] + "; charset=utf-8"}
    )
    assert r.status_code == 303 and r.headers["location"] == DASHBOARD
    cookie = set_cookie(r)
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/analytics"
    assert int(cookie["max-age"]) == settings.analytics_session_seconds
    assert cookie["expires"]
    assert not cookie["secure"]  # plain http here
    assert failures(anon) == before


def test_cookie_is_secure_when_the_request_came_over_https(anon: httpx.Client) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (SCALEMART_FORWARDED_ALLOW_IPS), as from the balancer
    r = anon.post(LOGIN, data={"token": ADMIN_TOKEN}, headers={"x-forwarded-proto": "https"})
    assert r.status_code == 303
    assert set_cookie(r)["secure"] is True


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", f'{{"token": "{ADMIN_TOKEN}"}}'),
        (
            "multipart/form-data; boundary=x",
            f'--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n{ADMIN_TOKEN}',
        ),
        ("text/plain", f"token={ADMIN_TOKEN}"),
        (None, f"token={ADMIN_TOKEN}"),
    ],
    ids=["json", "multipart", "text", "none"],
)
def test_login_in_another_content_type_is_415_naming_content_type(
    anon: httpx.Client, content_type: str | None, body: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = anon.post(LOGIN, content=body, headers=headers)
    assert_error(r, 415, "unsupported_media_type", "Content-Type")
    assert session.COOKIE not in r.headers.get("set-cookie", "")


def test_an_oversized_login_form_is_413(anon: httpx.Client) -> None:
    r = anon.post(LOGIN, content="token=" + "a" * 5000, headers=FORM)
    assert_error(r, 413, "body_too_large", "body")


# --- the dashboard
@pytest.mark.parametrize("path", ["/analytics", "/analytics/"])
def test_the_consoles_root_goes_to_the_dashboard(anon: httpx.Client, path: str) -> None:
    r = anon.get(path, follow_redirects=True)
    assert r.url.path == LOGIN and r.status_code == 200  # via the dashboard, for want of a session


def test_dashboard_without_a_session_redirects_to_the_login_form(anon: httpx.Client) -> None:
    before = failures(anon)
    r = anon.get(DASHBOARD)
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    assert failures(anon) == before  # a browser without a session yet is not a failed login


def test_dashboard_with_a_session_has_every_section_the_window_selector_and_logout(viewer: httpx.Client) -> None:
    r = viewer.get(DASHBOARD)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for section in SECTIONS:
        assert re.search(rf'<section id="{section}" data-state="loading">', r.text), section
    assert re.findall(r'<option value="([^"]+)">', r.text) == ["5m", "15m", "1h", "6h", "24h"]
    assert re.search(r'<form method="post" action="/analytics/logout">', r.text)
    assert 'data-src="/analytics/sparkline/requests_per_minute.svg"' in r.text
    assert 'data-src="/analytics/sparkline/p95_seconds.svg"' in r.text
    assert re.search(r'<script src="/analytics/static/analytics\.js\?v=[^"]+" defer>', r.text)
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("case", ["tampered", "expired", "other token", "garbage"])
def test_dashboard_with_a_bad_session_redirects_to_login_and_clears_the_cookie(
    anon: httpx.Client, settings: Settings, case: str
) -> None:
    good = cookie_signed(settings)
    value_ = {
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "expired": cookie_signed(settings, seconds_ago=settings.analytics_session_seconds + 5),
        "other token": cookie_signed(settings, token="another-admin-token-0123456789"),
        "garbage": "not-a-session",
    }[case]
    r = anon.get(DASHBOARD, headers={"cookie": f"{session.COOKIE}={value_}"})
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    cleared = set_cookie(r)
    assert cleared.value == "" and int(cleared["max-age"]) == 0 and cleared["path"] == "/analytics"


def test_a_cookie_signed_just_now_by_the_same_key_is_accepted(anon: httpx.Client, settings: Settings) -> None:
    # the converse of the above: the test's signing is the app's, so those refusals are the cookie's fault
    r = anon.get(DASHBOARD, headers={"cookie": f"{session.COOKIE}={cookie_signed(settings, seconds_ago=30)}"})
    assert r.status_code == 200


def test_logout_clears_the_cookie_and_goes_to_the_login_form(viewer: httpx.Client) -> None:
    assert viewer.get(DASHBOARD).status_code == 200
    r = viewer.post(LOGOUT)
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    cleared = set_cookie(r)
    assert cleared.value == "" and int(cleared["max-age"]) == 0 and cleared["path"] == "/analytics"
    assert cleared["httponly"] is True and cleared["samesite"].lower() == "strict"
    assert viewer.get(DASHBOARD).status_code == 303


# --- the JSON API's credential (require_viewer); business figures need only Redis
API = "/analytics/api/metrics/business"


def test_api_accepts_the_session_cookie(viewer: httpx.Client) -> None:
    r = viewer.get(API)
    assert r.status_code == 200, r.text
    assert "products" in r.json()


def test_api_accepts_the_bearer_token(admin: httpx.Client) -> None:
    assert admin.get(API).status_code == 200


def test_api_without_a_credential_is_401_and_counts_a_failure(anon: httpx.Client) -> None:
    before = failures(anon)
    r = anon.get(API)
    assert_error(r, 401, "missing_credentials", "Authorization")
    assert r.headers["www-authenticate"] == "Bearer"
    assert failures(anon) == before + 1


@pytest.mark.parametrize("seconds_ago", [None, 8 * 3600 + 5])
def test_api_with_a_bad_or_expired_cookie_is_401_naming_the_cookie(
    anon: httpx.Client, settings: Settings, seconds_ago: int | None
) -> None:
    before = failures(anon)
    cookie = "forged" if seconds_ago is None else cookie_signed(settings, seconds_ago=seconds_ago)
    body = assert_error(
        anon.get(API, headers={"cookie": f"{session.COOKIE}={cookie}"}), 401, "invalid_credentials", session.COOKIE
    )
    assert ("expired" in body["message"]) == (seconds_ago is not None)
    assert failures(anon) == before + 1


def test_a_wrong_bearer_token_is_refused_even_with_a_valid_cookie(viewer: httpx.Client) -> None:
    r = viewer.get(API, headers={"authorization": "Bearer wrong-token-value"})
    assert_error(r, 401, "invalid_credentials", "Authorization")


# --- sparklines
def test_sparkline_needs_a_credential(anon: httpx.Client) -> None:
    assert_error(anon.get("/analytics/sparkline/p95_seconds.svg"), 401, "missing_credentials", "Authorization")


def test_unknown_sparkline_is_404_naming_the_choices(viewer: httpx.Client) -> None:
    body = assert_error(viewer.get("/analytics/sparkline/cpu.svg"), 404, "unknown_sparkline", "name")
    assert "requests_per_minute" in body["message"] and "p95_seconds" in body["message"]


@pytest.mark.parametrize("name", ["requests_per_minute", "p95_seconds"])
def test_sparkline_without_prometheus_is_a_503_svg_saying_so(
    viewer: httpx.Client, admin: httpx.Client, name: str
) -> None:
    for c in (viewer, admin):
        r = c.get(f"/analytics/sparkline/{name}.svg", params={"t": "1"})
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("image/svg+xml")
        assert r.text.startswith("<svg") and "Prometheus unreachable" in r.text


def test_alerts_without_either_source_answer_503_naming_alertmanager(admin: httpx.Client) -> None:
    # without Prometheus alone they answer the active alerts (test_analytics_api.py); Alertmanager they need
    body = assert_error(admin.get("/analytics/api/alerts"), 503, "source_unavailable", "SCALEMART_ALERTMANAGER_URL")
    assert body["details"] == {"source": "alertmanager"} and "is not set" in body["message"], body


def test_sparkline_draws_points_and_labels_and_skips_nulls() -> None:
    svg = sparkline.render(
        "rpm", [[100, 1.0], [160, None], [220, 3.0], [280, float("nan")], [340, 2.0]], lambda v: f"{v:g}/min"
    )
    points = re.search(r'<polyline points="([^"]+)"', svg)
    assert points and len(points.group(1).split()) == 3
    assert "max 3/min" in svg and "min 1/min" in svg and 'viewBox="0 0 ' in svg


def test_sparkline_of_nothing_says_no_data_and_escapes_its_title() -> None:
    svg = sparkline.render("<b>&", [[1, None]])
    assert "no data" in svg and "<polyline" not in svg and "&lt;b&gt;&amp;" in svg


# --- static files: served from the package, nothing from elsewhere (the page works air-gapped)
@pytest.mark.parametrize(("path", "kind"), [("analytics.js", "javascript"), ("analytics.css", "text/css")])
def test_static_files_are_served_from_the_package(anon: httpx.Client, path: str, kind: str) -> None:
    r = anon.get(f"/analytics/static/{path}")
    assert r.status_code == 200 and kind in r.headers["content-type"]
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", r.text), "the console must load nothing from elsewhere"


def test_the_pages_reference_only_this_app(anon: httpx.Client, viewer: httpx.Client) -> None:
    for text in (anon.get(LOGIN).text, viewer.get(DASHBOARD).text):
        refs = re.findall(r'(?:src|href|action)="([^"]*)"', text)
        assert refs and all(ref.startswith("/analytics/") for ref in refs), refs


def test_static_requests_are_counted_as_the_consoles_not_as_shop_traffic(anon: httpx.Client) -> None:
    # the performance figures leave out route=~"/analytics/.*"; "<unmatched>" would count as the shop's
    before = samples(anon.get("/metrics").text)
    assert anon.get("/analytics/static/analytics.css").status_code == 200
    after = samples(anon.get("/metrics").text)
    labels = {"method": "GET", "status": "200"}
    assert (
        value(after, "scalemart_http_requests_total", route="/analytics/static", **labels)
        == value(before, "scalemart_http_requests_total", route="/analytics/static", **labels) + 1
    )
    assert value(after, "scalemart_http_requests_total", route="<unmatched>") == value(
        before, "scalemart_http_requests_total", route="<unmatched>"
    )


@pytest.mark.parametrize("path", ["nope.js", "..%2fpage.py", "%2e%2e/session.py", "../templates/base.html"])
def test_a_file_outside_the_static_folder_is_404(anon: httpx.Client, path: str) -> None:
    r = anon.get(f"/analytics/static/{path}")
    assert r.status_code == 404 and "import" not in r.text and "{%" not in r.text
