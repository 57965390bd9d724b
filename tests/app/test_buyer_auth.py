"""Buyers are who their token says (JWT, HS256, the environment's key), on the real app: every refusal, its
reason and its count; the user from the token; minting; JSON bodies only as JSON; the security headers."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from tests.app.conftest import BUYER_KEY, AppServer, as_buyer, assert_error, buy, create_product
from tests.app.test_metrics import samples, value


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _failures(c: httpx.Client) -> dict[str, float]:
    s = samples(c.get("/metrics").text)
    return {lab["reason"]: v for lab, v in s.get("scalemart_token_failures_total", [])}


def _body(product: str, user: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"product_id": product, "quantity": 1, "idempotency_key": uuid.uuid4().hex}
    return {**body, "user_id": user} if user else body


NOW = int(time.time())
BAD_TOKENS = [
    ("missing", None, "missing_token"),
    ("malformed", "Bearer not-a-jwt", "invalid_token"),
    ("malformed", "Token abc.def.ghi", "invalid_token"),  # not the Bearer scheme
    ("expired", "Bearer " + jwt.encode({"sub": "eve", "exp": NOW - 60}, BUYER_KEY, algorithm="HS256"), "invalid_token"),
    (
        "bad_signature",
        "Bearer " + jwt.encode({"sub": "eve", "exp": NOW + 600}, "another-key-" * 4, algorithm="HS256"),
        "invalid_token",
    ),
    # alg none: no signature at all
    (
        "bad_signature",
        f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'eve', 'exp': NOW + 600})}.",
        "invalid_token",
    ),
    # algorithm switching: the right key, another algorithm
    (
        "bad_signature",
        "Bearer " + jwt.encode({"sub": "eve", "exp": NOW + 600}, BUYER_KEY, algorithm="HS512"),
        "invalid_token",
    ),
    ("bad_claims", "Bearer " + jwt.encode({"sub": "eve"}, BUYER_KEY, algorithm="HS256"), "invalid_token"),  # no exp
    (
        "bad_claims",
        "Bearer " + jwt.encode({"sub": "a:b", "exp": NOW + 600}, BUYER_KEY, algorithm="HS256"),
        "invalid_token",
    ),
]


@pytest.mark.parametrize(
    ("reason", "header", "error"), BAD_TOKENS, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BAD_TOKENS)]
)
def test_a_bad_token_is_refused_with_its_reason_counted_and_nothing_sold(
    admin: httpx.Client, anon: httpx.Client, reason: str, header: str | None, error: str
) -> None:
    create_product(admin, "tok-a", stock=5) if admin.get("/api/products/tok-a").status_code == 404 else None
    before = _failures(anon)
    headers = {"Authorization": header} if header else {}
    r = anon.post("/api/buy", json=_body("tok-a", "eve"), headers=headers)
    body = assert_error(r, 401, error, field="Authorization")
    assert body["details"] == {"reason": reason}, body
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert _failures(anon).get(reason, 0) - before.get(reason, 0) == 1
    me = anon.get("/api/users/me/orders", headers=headers)
    assert_error(me, 401, error, field="Authorization")
    assert anon.get("/api/products/tok-a").json()["stock_left"] == 5, "a refused buyer took stock"


def test_the_buyer_is_the_tokens_user_and_a_different_body_user_is_403(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "tok-b", stock=5)
    r = anon.post("/api/buy", json=_body("tok-b"), headers=as_buyer("frank"))  # no user_id: the token's
    assert r.status_code == 201 and r.json()["user_id"] == "frank", r.text
    r = anon.post("/api/buy", json=_body("tok-b", "grace"), headers=as_buyer("frank"))
    assert_error(r, 403, "user_mismatch", field="user_id")
    assert anon.get("/api/products/tok-b").json()["stock_left"] == 4
    mine = anon.get("/api/users/me/orders", headers=as_buyer("frank")).json()
    assert mine["user_id"] == "frank" and len(mine["orders"]) == 1
    assert anon.get("/api/users/me/orders", headers=as_buyer("grace")).json()["orders"] == []


def _login_failures(c: httpx.Client) -> float:
    return value(samples(c.get("/metrics").text), "scalemart_login_failures_total")


def test_another_users_orders_are_admin_only(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "tok-c", stock=5)
    assert buy(anon, "tok-c", user="heidi").status_code == 201
    before = _login_failures(anon)
    for user in ("ivan", "heidi"):  # even one's own, by id: that is /api/users/me/orders
        r = anon.get("/api/users/heidi/orders", headers=as_buyer(user))
        body = assert_error(r, 403, "admin_only", field="Authorization")
        assert "another user's orders are admin-only" in body["message"], body
        assert f"'{user}'" in body["message"] and "GET /api/users/me/orders" in body["message"], body
        assert "WWW-Authenticate" not in r.headers  # a credential the app knows: not a request to authenticate
    assert _login_failures(anon) - before == 2, "a buyer token on an admin route is an admin request without it"
    assert len(admin.get("/api/users/heidi/orders").json()["orders"]) == 1


def test_another_users_orders_without_a_valid_credential_are_401(anon: httpx.Client) -> None:
    # Neither the admin token nor a valid buyer token: the admin route's own 401s, whatever the header holds.
    missing = anon.get("/api/users/heidi/orders")
    assert_error(missing, 401, "missing_credentials", field="Authorization")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    for header in [header for _, header, _ in BAD_TOKENS if header]:
        r = anon.get("/api/users/heidi/orders", headers={"Authorization": header})
        assert_error(r, 401, "invalid_credentials", field="Authorization")
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_idempotency_keys_are_per_authenticated_user(admin: httpx.Client, anon: httpx.Client) -> None:
    create_product(admin, "tok-d", stock=5)
    key = uuid.uuid4().hex
    first = buy(anon, "tok-d", user="judy", key=key)
    again = buy(anon, "tok-d", user="judy", key=key)
    other = buy(anon, "tok-d", user="karl", key=key)  # the same key from another buyer is another purchase
    assert first.status_code == again.status_code == other.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    assert other.json()["order_id"] != first.json()["order_id"]
    assert anon.get("/api/products/tok-d").json()["stock_left"] == 3


def test_the_admin_endpoint_and_the_cli_mint_tokens_that_buy(
    shared_app: AppServer, admin: httpx.Client, anon: httpx.Client
) -> None:
    create_product(admin, "tok-e", stock=5)
    minted = admin.post("/api/admin/tokens", json={"user_id": "lena", "ttl_seconds": 120})
    assert minted.status_code == 201, minted.text
    assert minted.json()["user_id"] == "lena" and minted.json()["expires_at"]
    r = anon.post("/api/buy", json=_body("tok-e"), headers={"Authorization": f"Bearer {minted.json()['token']}"})
    assert r.status_code == 201 and r.json()["user_id"] == "lena"
    for bad in ({"user_id": "lena", "ttl_seconds": 0}, {"user_id": "lena", "ttl_seconds": -5}, {"user_id": "bad:user"}):
        field = "ttl_seconds" if "ttl_seconds" in bad else "user_id"
        assert_error(admin.post("/api/admin/tokens", json=bad), 422, "validation_error", field=field)
    cli = shared_app.env.run_cli("token", "issue", "--user", "mona", "--ttl", "15m")
    assert cli.returncode == 0, cli.stderr
    claims = jwt.decode(cli.stdout.strip(), BUYER_KEY, algorithms=["HS256"])
    assert claims["sub"] == "mona" and 890 <= claims["exp"] - time.time() <= 900
    for ttl in ("0", "-1m", "15 minutes", "31d"):
        refused = shared_app.env.run_cli("token", "issue", "--user", "mona", f"--ttl={ttl}")
        assert refused.returncode == 2 and "--ttl must be" in refused.stderr, (ttl, refused.stderr)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_a_json_body_sent_as_anything_but_json_is_415_and_sells_nothing(
    admin: httpx.Client, anon: httpx.Client, content_type: str | None
) -> None:
    # What a cross-site form can send without a CORS preflight: it must not sell.
    if admin.get("/api/products/tok-f").status_code == 404:
        create_product(admin, "tok-f", stock=5)
    headers = {**as_buyer("nina"), **({"Content-Type": content_type} if content_type else {})}
    r = anon.post("/api/buy", content=json.dumps(_body("tok-f")).encode(), headers=headers)
    assert_error(r, 415, "unsupported_media_type", field="Content-Type")
    r = admin.post("/api/admin/products/tok-f/restock", content=b'{"quantity": 5}', headers=headers)
    assert_error(r, 415, "unsupported_media_type", field="Content-Type")
    assert anon.get("/api/products/tok-f").json()["stock_left"] == 5


def test_oversized_bodies_and_injection_shapes_are_refused_and_counted(admin: httpx.Client, anon: httpx.Client) -> None:
    before = samples(anon.get("/metrics").text)
    big = {**_body("tok-g"), "pad": "x" * 20000}
    assert_error(anon.post("/api/buy", json=big, headers=as_buyer("olga")), 413, "body_too_large", field="body")
    for shape in (
        {"product_id": {"$gt": ""}},
        {"product_id": "x'; DROP TABLE orders; --"},
        {"idempotency_key": {"$where": "sleep(1000)"}},
    ):
        r = anon.post("/api/buy", json={**_body("tok-g"), **shape}, headers=as_buyer("olga"))
        assert r.status_code == 422, r.text
    r = admin.post("/api/admin/products", json={"id": {"$ne": None}, "name": "x", "price": 1, "stock": 1})
    assert r.status_code == 422
    assert_error(anon.get("/api/products/$where"), 422, "validation_error")
    after = samples(anon.get("/metrics").text)
    assert value(after, "scalemart_oversized_bodies_total") - value(before, "scalemart_oversized_bodies_total") == 1
    grew = value(after, "scalemart_injection_attempts_total") - value(before, "scalemart_injection_attempts_total")
    assert grew == 5, grew
    plain = anon.post("/api/buy", json={**_body("tok-g"), "quantity": 0}, headers=as_buyer("olga"))
    assert plain.status_code == 422
    last = samples(anon.get("/metrics").text)
    assert value(last, "scalemart_injection_attempts_total") == value(after, "scalemart_injection_attempts_total"), (
        "an ordinary bad value is not an injection attempt"
    )


def test_a_chunked_oversized_body_is_413_and_sells_nothing(admin: httpx.Client, anon: httpx.Client) -> None:
    # no Content-Length to refuse it by: the middleware reads it up to the limit instead of letting it grow
    create_product(admin, "tok-h", stock=5)
    big = json.dumps({**_body("tok-h"), "pad": "x" * 20000}).encode()
    chunks = iter([big[i : i + 4096] for i in range(0, len(big), 4096)])
    before = value(samples(anon.get("/metrics").text), "scalemart_oversized_bodies_total")
    r = anon.post("/api/buy", content=chunks, headers={**as_buyer("olga"), "Content-Type": "application/json"})
    assert_error(r, 413, "body_too_large", field="body")
    assert value(samples(anon.get("/metrics").text), "scalemart_oversized_bodies_total") == before + 1
    small = iter([json.dumps(_body("tok-h")).encode()])  # a chunked body under the limit still buys
    ok = anon.post("/api/buy", content=small, headers={**as_buyer("olga"), "Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text
    assert anon.get("/api/products/tok-h").json()["stock_left"] == 4


@pytest.mark.parametrize("query", ["user_id[$ne]=x", "limit%5B%24gt%5D=", "$where=sleep(1000)"])
def test_a_query_parameter_named_like_an_operator_is_422_naming_it_and_counted(anon: httpx.Client, query: str) -> None:
    before = value(samples(anon.get("/metrics").text), "scalemart_injection_attempts_total")
    r = anon.get(f"/api/users/me/orders?{query}", headers=as_buyer("olga"))
    name = query.split("=")[0].replace("%5B%24gt%5D", "[$gt]")
    body = assert_error(r, 422, "validation_error")
    assert body["field"] == name and name in body["message"], body
    assert value(samples(anon.get("/metrics").text), "scalemart_injection_attempts_total") == before + 1
    assert anon.get("/api/users/me/orders?limit=1", headers=as_buyer("olga")).status_code == 200


def test_an_operator_as_an_unknown_key_is_counted(anon: httpx.Client) -> None:
    before = value(samples(anon.get("/metrics").text), "scalemart_injection_attempts_total")
    r = anon.post("/api/buy", json={**_body("tok-g"), "$where": "sleep(1000)"}, headers=as_buyer("olga"))
    assert r.status_code == 422 and r.json()["field"] == "$where" and "$where" in r.json()["message"], r.text
    assert value(samples(anon.get("/metrics").text), "scalemart_injection_attempts_total") == before + 1


@pytest.mark.parametrize(
    "content", [b'{"quantity": "\xff\xfe"}', b"[" * 3000 + b"]" * 3000], ids=["not-utf8", "nested-3000"]
)
def test_an_unreadable_body_is_400_naming_the_body(admin: httpx.Client, content: bytes) -> None:
    r = admin.post("/api/admin/products/tok-g/restock", content=content, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed_body", field="body")


def test_answers_carry_the_security_headers_and_no_cors_by_default(anon: httpx.Client) -> None:
    r = anon.get("/api/products", headers={"Origin": "https://evil.example"})
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert "access-control-allow-origin" not in r.headers
    pre = anon.options("/api/buy", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_the_cors_allow_list_admits_the_shops_own_front_end_only(make_env: Any, running: list[Any]) -> None:
    server = AppServer(make_env(cors_allow_origins='["https://shop.example"]'), workers=1).start()
    running.append(server)
    with server.client() as c:
        ok = c.options(
            "/api/buy",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example"
        other = c.options(
            "/api/buy", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_refused_buys_spend_the_clients_budget_too(make_env: Any, running: list[Any]) -> None:
    # The buy script spends the budget of a buy that reaches it; a forged token or a bad body never does.
    server = AppServer(make_env(rate_limit_requests=5, rate_limit_window_seconds=30), workers=1).start()
    running.append(server)
    with server.client() as c:
        forged = {"Authorization": BAD_TOKENS[4][1] or ""}
        statuses = [c.post("/api/buy", json=_body("rl-forged"), headers=forged).status_code for _ in range(5)]
        assert statuses == [401] * 5, statuses
        r = c.post("/api/buy", json=_body("rl-forged"), headers=forged)
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        r = c.post("/api/buy", content=b"{", headers={**as_buyer("mallory"), "Content-Type": "application/json"})
        assert_error(r, 429, "rate_limited")  # a bad body from the same client, with a valid token
        assert c.get("/health/live").status_code == 200


def test_a_bad_cors_origin_setting_is_refused_naming_it(make_env: Any) -> None:
    env = make_env(cors_allow_origins='["*"]')
    r = env.run_cli("reconcile")
    assert r.returncode == 2 and "SCALEMART_CORS_ALLOW_ORIGINS" in r.stderr, r.stderr
