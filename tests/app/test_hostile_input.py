"""Hostile input against every operation of the OpenAPI: refused with a 4xx naming the field, counted, shop unchanged.

The cases are built from the app's own OpenAPI (every path, query and body field by its schema), so a new
operation gets them without an edit here; `test_every_operation_of_the_served_openapi_has_hostile_cases` fails
when the served spec and the cases disagree. Each input goes with each credential that matters (none, a buyer
token, the admin token): the answer is a 4xx with a JSON error naming the field, never a 2xx, never a 5xx.
The valid parts of each request are real (an open product, its buyer), so a hostile input that slipped through
would sell, restock or create something, and `test_the_shop_is_unchanged_by_every_hostile_input` (last in this
file; a module stays on one xdist worker) compares full dumps of Redis and MongoDB taken before and after.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from tests.app.conftest import ADMIN_TOKEN, BUYER_KEY, AppServer, as_buyer, buy, create_product, wait_drained
from tests.app.test_metrics import samples, value

BUYER, OTHER_USER = "hx-alice", "hx-mallory"
OPEN_PRODUCT, CLOSED_PRODUCT, NEW_PRODUCT = "hx-open", "hx-closed", "hx-new"
# A valid value of each path parameter: a hostile one in its place is the only reason to refuse.
PATH_VALUES = {"product_id": OPEN_PRODUCT, "user_id": BUYER}
# A valid body per operation that takes one; accepted, each would change the shop.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/buy"): {"product_id": OPEN_PRODUCT, "quantity": 1, "idempotency_key": "hostile-input-0001"},
    ("POST", "/api/admin/products"): {"id": NEW_PRODUCT, "name": "New", "price": 1.5, "stock": 3, "open": True},
    ("POST", "/api/admin/products/{product_id}/restock"): {"quantity": 2},
    ("POST", "/api/admin/products/{product_id}/sale"): {"action": "close"},
    ("POST", "/api/admin/tokens"): {"user_id": BUYER, "ttl_seconds": 60},
}
# The operations whose user is the buyer token's; any other with a 401 in its responses is the admin's.
BUYER_OPERATIONS = {("POST", "/api/buy"), ("GET", "/api/users/me/orders")}
# Admin operations a buyer may take for their own: a valid buyer token there is 403, not 401
# (deps.require_admin_not_buyer), and counted as the 401 is.
BUYER_FORBIDDEN = {("GET", "/api/users/{user_id}/orders")}
# Routes that read their body by hand after the token (purchase.buy); FastAPI parses the others' first.
TOKEN_BEFORE_BODY = {("POST", "/api/buy")}
# Redis keys a refused request may move without the shop changing: the read caches (they also expire) and the
# rate limiter's buckets.
VOLATILE_KEYS = re.compile(r"^sm:(cache:|rl:)")


@dataclass(frozen=True)
class Hostile:
    name: str
    value: Any
    injection: bool  # scalemart_injection_attempts_total must count it once it reaches validation


STRINGS = (
    Hostile("traversal", "../../etc/passwd", True),
    Hostile("traversal-windows", "..\\..\\windows\\win.ini", False),
    Hostile("traversal-encoded", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", False),
    Hostile("sql-or", "' OR '1'='1", True),
    Hostile("sql-drop", "x'; DROP TABLE orders; --", True),
    Hostile("sql-union", "1 UNION SELECT token FROM users", True),
    Hostile("js-where", "'; return this.stock > 0; var x='", False),
    Hostile("script", "<script>alert(1)</script>", True),
    Hostile("template", "{{7*7}}", True),
    Hostile("operator-string", "$where", True),
    Hostile("lua-call", "x') redis.call('FLUSHALL') --", True),
    Hostile("resp-crlf", "x\r\nFLUSHALL\r\n", True),
    Hostile("redis-key", "sm:p:hx-open", False),
    Hostile("glob", "*", False),
    Hostile("nul", "a\x00b", False),
    Hostile("fullwidth", "\uff54\uff56\uff0d\uff15\uff15", False),
    Hostile("rtl-override", "tv\u202e55", False),
    Hostile("over-long", "a" * 4000, False),
)
OPERATORS = (
    Hostile("op-gt", {"$gt": ""}, True),
    Hostile("op-ne-null", {"$ne": None}, True),
    Hostile("op-where", {"$where": "sleep(1000)"}, True),
    Hostile("op-regex", {"$regex": ".*"}, True),
    Hostile("op-in-list", [{"$in": ["a"]}], True),
)
NUMBERS = (
    Hostile("negative", -1, False),
    Hostile("zero", 0, False),
    Hostile("int64-min", -(2**63), False),
    Hostile("huge", 10**30, False),
    Hostile("uint64-overflow", 2**64, False),
    Hostile("huge-float", 1e308, False),
    Hostile("fraction", 1.5, False),
    Hostile("nan", float("nan"), False),
    Hostile("infinity", float("inf"), False),
    Hostile("minus-infinity", float("-inf"), False),
    Hostile("400-digits", int("9" * 400), False),
    Hostile("sql-number", "1; DROP TABLE orders", True),
)
WRONG_TYPES = (
    Hostile("type-bool", True, False),
    Hostile("type-object", {"a": 1}, False),
    Hostile("type-list", [1], False),
    Hostile("type-null", None, False),
)
QUERY_NAMES = (
    Hostile("qs-ne", "{name}[$ne]=x", True),
    Hostile("qs-gt-encoded", "{name}%5B%24gt%5D=", True),
    Hostile("qs-where", "$where=sleep(1000)", True),
)


def hostile_values(schema: dict[str, Any], body: bool) -> list[Hostile]:
    """The catalogue for one field, each value one its schema surely refuses. A field of text gets every string
    and a few numbers; any other (numbers, booleans, enums, dates) every number and the injection-shaped strings:
    to a number field, one wrong string is as wrong as another."""
    textual = any(
        s.get("type") == "string" and "enum" not in s and s.get("format") != "date-time" for s in _variants(schema)
    )
    strings = STRINGS if textual else tuple(h for h in STRINGS if h.injection or h.name in ("nul", "over-long"))
    numbers = tuple(h for h in NUMBERS if h.name in ("negative", "huge", "nan")) if textual else NUMBERS
    found = (*strings, *numbers, *(OPERATORS + WRONG_TYPES if body else WRONG_TYPES[:1]))
    if body:
        return [h for h in found if refused(schema, h.value)]
    return [h for h in found if refused_text(schema, h.value if isinstance(h.value, str) else json.dumps(h.value))]


def _spec() -> dict[str, Any]:
    from pydantic import SecretStr
    from scalemart.api import create_app
    from scalemart.settings import Settings

    settings = Settings(environment="test", admin_token=SecretStr(ADMIN_TOKEN), buyer_token_key=SecretStr(BUYER_KEY))
    return create_app(settings).openapi()


SPEC = _spec()


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [_resolve(s) for s in schema.get("anyOf", [schema])]


def refused(schema: dict[str, Any], v: Any) -> bool:
    """Whether the schema surely refuses `v` (only such values are sent: an accepted one would change the shop)."""

    def one(s: dict[str, Any]) -> bool:
        kind = s.get("type")
        if kind == "null":
            return v is not None
        if "enum" in s:
            return v not in s["enum"]
        if kind == "boolean":
            return not isinstance(v, bool)
        if kind in ("integer", "number"):
            if isinstance(v, bool) or not isinstance(v, int | float):
                return True
            if v != v or v in (float("inf"), float("-inf")) or (kind == "integer" and v != int(v)):
                return True
            low, high = s.get("minimum", s.get("exclusiveMinimum")), s.get("maximum", s.get("exclusiveMaximum"))
            return (low is not None and (v < low or (v == low and "exclusiveMinimum" in s))) or (
                high is not None and (v > high or (v == high and "exclusiveMaximum" in s))
            )
        if kind == "string" and s.get("format") == "date-time":
            # pydantic takes a number for a date (unix time); none of the hostile strings is a date
            return isinstance(v, bool) or not isinstance(v, int | float | str)
        if kind == "string":
            pattern = s.get("pattern")
            return not isinstance(v, str) or (pattern is not None and not re.fullmatch(pattern.strip("^$"), v))
        return False

    return all(one(s) for s in _variants(schema))


def refused_text(schema: dict[str, Any], raw: str) -> bool:
    """`refused` for a path or query parameter, whose value is text the app converts to the schema's type."""

    def one(s: dict[str, Any]) -> bool:
        kind = s.get("type")
        if kind == "integer":
            return not re.fullmatch(r"-?\d+", raw) or refused(s, int(raw))
        if kind == "number":
            try:
                return refused(s, float(raw))
            except ValueError:
                return True
        if kind == "boolean":
            return raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n")
        return refused(s, raw)

    return all(one(s) for s in _variants(schema))


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    label: str
    cred: str  # none | buyer | admin | a token or cookie shape (TOKEN_SHAPES, COOKIE_SHAPES)
    status: int
    fault: str | None  # the field the error must name
    path_values: dict[str, str] = field(default_factory=dict)
    query: str = ""
    body: Any = None  # JSON, sent as bytes unless `content` is given
    content: bytes | None = None
    content_type: str | None = "application/json"
    chunked: bool = False
    injection: bool = False
    token_reason: str | None = None  # the 401's reason (details.reason)
    counts: tuple[str, ...] = ()  # the counters it moves by one (COUNTERS)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path} {self.label} as-{self.cred}"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _tokens() -> dict[str, tuple[str, str]]:
    """Refused buyer credentials: shape -> (Authorization header, the reason of the 401)."""
    now = int(time.time())
    claims = {"sub": BUYER, "iat": now, "exp": now + 600}
    return {
        "token-forged": (
            "Bearer " + jwt.encode(claims, "another-shops-key-" + "x" * 32, algorithm="HS256"),
            "bad_signature",
        ),
        "token-alg-none": (f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.", "bad_signature"),
        "token-alg-hs384": ("Bearer " + jwt.encode(claims, BUYER_KEY, algorithm="HS384"), "bad_signature"),
        "token-expired": (
            "Bearer " + jwt.encode({**claims, "exp": now - 3600}, BUYER_KEY, algorithm="HS256"),
            "expired",
        ),
        "token-sub-operator": (
            "Bearer " + jwt.encode({**claims, "sub": {"$ne": None}}, BUYER_KEY, algorithm="HS256"),
            "bad_claims",
        ),
        "token-sub-traversal": (
            "Bearer " + jwt.encode({**claims, "sub": "../admin"}, BUYER_KEY, algorithm="HS256"),
            "bad_claims",
        ),
        "token-no-exp": ("Bearer " + jwt.encode({"sub": BUYER}, BUYER_KEY, algorithm="HS256"), "bad_claims"),
        "token-not-jwt": ("Bearer ' OR '1'='1", "malformed"),
        "token-basic-scheme": ("Basic " + base64.b64encode(b"admin:admin").decode(), "malformed"),
        "admin-token-injected": (f"Bearer {ADMIN_TOKEN}' OR '1'='1", "malformed"),
    }


TOKEN_SHAPES = tuple(_tokens())
COOKIE_SHAPES = ("cookie-forged", "cookie-operator")


def _kind(method: str, path: str, op: dict[str, Any]) -> str:
    if (method, path) in BUYER_OPERATIONS:
        return "buyer"
    if "401" not in op["responses"]:
        return "public"
    return "viewer" if path.startswith("/analytics/") else "admin"


def _auth_refusal(kind: str, cred: str) -> tuple[str, ...] | None:
    """The counters the 401 of a wrong credential (none, or the other role's) moves; None when it is the right one."""
    if kind == "public" or cred == kind or (kind == "viewer" and cred == "admin"):
        return None
    if kind == "buyer":  # no header at all, or the admin token, which is no JWT
        return ("token:missing",) if cred == "none" else ("token:malformed",)
    return ("login",)


def _with_creds(
    kind: str, make: Any, stage: str, status: int, fld: str | None, seen: set[tuple[str, str]] | None = None, **kw: Any
) -> Iterator[Case]:
    """The case with each credential that matters; `stage` is where the refusal happens: before the credential
    is read (`early`: the middleware, FastAPI's body parser), or after it (`late`). A wrong credential gets a
    late case once per hostile value and operation, not once per field: the input is never read."""
    for cred in ("none",) if kind == "public" else ("none", "buyer", "admin"):
        auth = _auth_refusal(kind, cred)
        if auth is not None and stage == "late":
            value_name = kw["label"].rsplit(".", 1)[-1]
            if seen is not None and (cred, value_name) in seen:
                continue
            if seen is not None:
                seen.add((cred, value_name))
            case = make(cred=cred, status=401, fault="Authorization", counts=auth, **{**kw, "injection": False})
            yield replace(case, status=403) if cred == "buyer" and (case.method, case.path) in BUYER_FORBIDDEN else case
        else:
            counts = ("injection",) if kw.get("injection") else ("oversized",) if status == 413 else ()
            yield make(cred=cred, status=status, fault=fld, counts=counts, **kw)


def _maker(method: str, path: str, path_values: dict[str, str], body: Any) -> Any:
    """Cases of one operation, with its valid path values and body unless told otherwise."""

    def make(label: str, **kw: Any) -> Case:
        kw.setdefault("path_values", path_values)
        kw.setdefault("body", body)
        return Case(method, path, label, **kw)

    return make


def build_cases() -> list[Case]:
    cases: list[Case] = []
    for path, ops in SPEC["paths"].items():
        for method_lower, op in ops.items():
            method = method_lower.upper()
            kind = _kind(method, path, op)
            seen: set[tuple[str, str]] = set()
            params = op.get("parameters", [])
            path_values = {p["name"]: PATH_VALUES[p["name"]] for p in params if p["in"] == "path"}
            body = VALID_BODIES.get((method, path)) if "requestBody" in op else None
            make = _maker(method, path, path_values, body)

            # operator-shaped query parameter names: refused by the middleware before anything else
            for h in QUERY_NAMES:
                name = next((p["name"] for p in params if p["in"] == "query"), "user_id")
                qs_field = re.sub(r"%5B%24gt%5D", "[$gt]", h.value.format(name=name).split("=")[0])
                cases += _with_creds(
                    kind,
                    make,
                    "early",
                    422,
                    qs_field,
                    label=f"query-name.{h.name}",
                    query=h.value.format(name=name),
                    injection=h.injection,
                )
            for p in params:
                for h in hostile_values(p["schema"], body=False):
                    raw = h.value if isinstance(h.value, str) else json.dumps(h.value)
                    if p["in"] == "path":
                        if "/" in raw or "\\" in raw:
                            continue  # a slash is a different route (404), not this parameter
                        pv = {**path_values, p["name"]: raw}
                        cases += _with_creds(
                            kind,
                            make,
                            "late",
                            422,
                            p["name"],
                            seen,
                            label=f"path.{p['name']}.{h.name}",
                            path_values=pv,
                            injection=h.injection,
                        )
                    else:
                        cases += _with_creds(
                            kind,
                            make,
                            "late",
                            422,
                            p["name"],
                            seen,
                            label=f"query.{p['name']}.{h.name}",
                            query=f"{p['name']}={quote(raw, safe='')}",
                            injection=h.injection,
                        )
            if "requestBody" not in op:
                cases += _credential_cases(kind, make)
                continue
            if body is None:
                continue  # test_every_operation_of_the_served_openapi_has_hostile_cases names it
            late = "late" if (method, path) in TOKEN_BEFORE_BODY else "early"
            raw_body = json.dumps(body).encode()
            for label, ctype in (
                ("text-plain", "text/plain"),
                ("form", "application/x-www-form-urlencoded"),
                ("multipart", "multipart/form-data; boundary=x"),
                ("none", None),
                ("json-lookalike", "application/jsonp"),
            ):
                cases += _with_creds(
                    kind,
                    make,
                    "early",
                    415,
                    "Content-Type",
                    label=f"content-type.{label}",
                    content=raw_body,
                    content_type=ctype,
                )
            big = json.dumps({**body, "pad": "x" * 20000}).encode()
            cases += _with_creds(kind, make, "early", 413, "body", label="oversized", content=big)
            cases += _with_creds(kind, make, "early", 413, "body", label="oversized-chunked", content=big, chunked=True)
            for label, content in (
                ("malformed-json", raw_body[:-3]),
                ("not-utf8", b'{"a": "\xff\xfe"}'),
                ("nul-in-json", raw_body.replace(b'"', b'"\x00', 1)),
                ("nested-3000", b"[" * 3000 + b"]" * 3000),
            ):
                cases += _with_creds(kind, make, late, 400, "body", label=f"body.{label}", content=content)
            for label, whole, injection in (
                ("array", [body], False),
                ("scalar-operator", "$where", True),
                ("null", None, False),
            ):
                cases += _with_creds(
                    kind,
                    make,
                    "late",
                    422,
                    "body",
                    label=f"body.{label}",
                    content=json.dumps(whole).encode(),
                    injection=injection,
                )
            for label, extra, injection in (
                ("where", {"$where": "sleep(1000)"}, True),
                ("proto", {"__proto__": {"is_admin": True}}, False),
                ("bracket-operator", {"user_id[$ne]": "x"}, True),
            ):
                key = next(iter(extra))
                cases += _with_creds(
                    kind,
                    make,
                    "late",
                    422,
                    key,
                    label=f"extra-key.{label}",
                    body={**body, **extra},
                    injection=injection,
                )
            props = _resolve(op["requestBody"]["content"]["application/json"]["schema"])
            for prop, schema in props["properties"].items():
                for h in hostile_values(schema, body=True):
                    cases += _with_creds(
                        kind,
                        make,
                        "late",
                        422,
                        prop,
                        seen,
                        label=f"body.{prop}.{h.name}",
                        body={**body, prop: h.value},
                        injection=h.injection,
                    )
            if kind == "buyer" and "user_id" in props["properties"]:
                cases += _with_creds(
                    kind,
                    make,
                    "late",
                    403,
                    "user_id",
                    label="body.user_id.another-user",
                    body={**body, "user_id": OTHER_USER},
                )
            cases += _credential_cases(kind, make)
    return cases


def _credential_cases(kind: str, make: Any) -> list[Case]:
    """Refused credentials on an otherwise valid request (so that one accepted would change the shop)."""
    if kind == "public":
        return []
    tokens = _tokens()
    out = [
        make(
            "credential",
            cred=shape,
            status=401,
            fault="Authorization",
            token_reason=tokens[shape][1] if kind == "buyer" else None,
            counts=(f"token:{tokens[shape][1]}",) if kind == "buyer" else ("login",),
        )
        for shape in TOKEN_SHAPES
    ]
    if kind == "viewer":
        out += [
            make("credential", cred=shape, status=401, fault="scalemart_session", counts=("login",))
            for shape in COOKIE_SHAPES
        ]
    return out


CASES = build_cases()


def _headers(case: Case) -> dict[str, str]:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    if case.cred == "buyer":
        headers.update(as_buyer(BUYER))
    elif case.cred == "admin":
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    elif case.cred in TOKEN_SHAPES:
        headers["Authorization"] = _tokens()[case.cred][0]
    elif case.cred == "cookie-forged":
        headers["Cookie"] = "scalemart_session=ImFkbWluIg.Zx.forged-signature"
    elif case.cred == "cookie-operator":
        headers["Cookie"] = "scalemart_session=%7B%22%24ne%22%3A+null%7D"
    return headers


def send(client: httpx.Client, case: Case) -> httpx.Response:
    url = case.path
    for name, raw in case.path_values.items():
        url = url.replace("{" + name + "}", quote(raw, safe=""))
    if case.query:
        url += "?" + case.query
    content: Any = case.content
    if content is None and case.method in ("POST", "PUT", "PATCH"):
        content = json.dumps(case.body).encode()
    if case.chunked:
        data = content
        content = iter([data[i : i + 4096] for i in range(0, len(data), 4096)])
    return client.request(case.method, url, content=content, headers=_headers(case))


def dump_shop(server: AppServer) -> dict[str, Any]:
    """Every sale-state key in Redis with its value, and every document of every MongoDB collection."""
    import redis

    r = redis.Redis.from_url(server.env.vars["SCALEMART_REDIS_URL"], decode_responses=True)
    keys: dict[str, Any] = {}
    for key in sorted(r.scan_iter("sm:*")):
        if VOLATILE_KEYS.match(key):
            continue
        kind = str(r.type(key))
        if kind == "string":
            keys[key] = r.get(key)
        elif kind == "hash":
            keys[key] = r.hgetall(key)
        elif kind == "set":
            keys[key] = sorted(r.smembers(key))
        elif kind == "zset":
            keys[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            keys[key] = r.lrange(key, 0, -1)
        elif kind == "stream":
            info = r.xinfo_stream(key)
            groups = [{k: g[k] for k in ("name", "pending", "last-delivered-id")} for g in r.xinfo_groups(key)]
            keys[key] = {
                "entries": r.xrange(key),
                "last": info["last-generated-id"],
                "added": info.get("entries-added"),
                "groups": groups,
            }
        else:
            keys[key] = f"<{kind}>"
    db = server.env.mongo()
    mongo = {name: list(db[name].find({}).sort("_id", 1)) for name in sorted(db.list_collection_names())}
    return {"redis": keys, "mongodb": mongo}


def scrape(client: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics")
    assert r.status_code == 200, f"GET /metrics answered {r.status_code}: {r.text[:300]}"
    return samples(r.text)


# What a case's `counts` name: the counter and its labels.
COUNTERS = {
    "injection": ("scalemart_injection_attempts_total", {}),
    "oversized": ("scalemart_oversized_bodies_total", {}),
    "login": ("scalemart_login_failures_total", {}),
    **{
        f"token:{reason}": ("scalemart_token_failures_total", {"reason": reason})
        for reason in ("missing", "malformed", "expired", "bad_signature", "bad_claims")
    },
}


@dataclass
class Shop:
    server: AppServer
    client: httpx.Client
    before: dict[str, Any]
    metrics_before: dict[str, list[tuple[dict[str, str], float]]]
    counted: Counter[str] = field(default_factory=Counter)  # what the cases that ran must have counted


@pytest.fixture(scope="module")
def shop(shared_app: AppServer, admin: httpx.Client) -> Iterator[Shop]:
    """A shop with something to lose: an open product with stock, a closed one, an order persisted in MongoDB."""
    create_product(admin, OPEN_PRODUCT, stock=10, price=2.5)
    create_product(admin, CLOSED_PRODUCT, stock=5, open_sale=False)
    assert buy(admin, OPEN_PRODUCT, user=BUYER, key=f"seed-{uuid.uuid4().hex}").status_code == 201
    wait_drained(shared_app.env, expected_orders=1)
    with httpx.Client(base_url=shared_app.url, timeout=30) as client:
        yield Shop(shared_app, client, dump_shop(shared_app), scrape(client))


def test_every_operation_of_the_served_openapi_has_hostile_cases(shop: Shop) -> None:
    served = shop.client.get("/openapi.json").json()
    operations = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    covered = {(c.method, c.path) for c in CASES}
    assert operations == {(m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops}, (
        "the served OpenAPI differs from the app this module built its cases from"
    )
    assert not operations - covered, f"operations with no hostile case: {sorted(operations - covered)}"
    no_body = sorted(
        (m.upper(), p)
        for p, ops in SPEC["paths"].items()
        for m, op in ops.items()
        if "requestBody" in op and (m.upper(), p) not in VALID_BODIES
    )
    assert not no_body, f"add a valid body for {no_body} to VALID_BODIES: their fields get no hostile case without"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_input_is_refused_naming_the_field(shop: Shop, case: Case) -> None:
    r = send(shop.client, case)
    assert r.status_code == case.status, f"{case.id}: expected {case.status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body.get("error") and body.get("message"), body
    if case.fault is not None:
        assert body["field"] == case.fault or str(body["field"]).startswith(case.fault + "."), body
        assert case.fault in body["message"], f"the message does not name {case.fault}: {body}"
    if case.token_reason is not None:
        assert (body.get("details") or {}).get("reason") == case.token_reason, body
    shop.counted.update(case.counts)


def test_the_refusals_were_counted(shop: Shop) -> None:
    # Exactly: every injection-shaped input that reached validation once, every token refusal by its reason, every
    # admin credential refusal and every oversized body; an ordinary bad value is no injection attempt.
    assert shop.counted, "no hostile case ran before this test"
    after = scrape(shop.client)
    grew = {
        key: value(after, name, **labels) - value(shop.metrics_before, name, **labels)
        for key, (name, labels) in COUNTERS.items()
    }
    assert grew == {key: float(shop.counted[key]) for key in COUNTERS}, (grew, dict(shop.counted))
    routes = set(SPEC["paths"])
    accepted = [
        lab
        for lab, v in after.get("scalemart_http_requests_total", [])
        if lab["status"].startswith(("2", "5"))
        and lab["route"] in routes
        and v > value(shop.metrics_before, "scalemart_http_requests_total", **lab)
    ]
    assert not accepted, f"hostile requests answered 2xx or 5xx (by the app's own request counter): {accepted}"


def test_the_shop_is_unchanged_by_every_hostile_input(shop: Shop) -> None:
    # last in the module: every case above has run
    wait_drained(shop.server.env, expected_orders=1, timeout=30)
    after = dump_shop(shop.server)
    assert after["mongodb"] == shop.before["mongodb"], "MongoDB changed under hostile input"
    changed = {
        k
        for k in shop.before["redis"].keys() | after["redis"].keys()
        if shop.before["redis"].get(k) != after["redis"].get(k)
    }
    assert not changed, {k: (shop.before["redis"].get(k), after["redis"].get(k)) for k in sorted(changed)}
