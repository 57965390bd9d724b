"""The analytics JSON API on the real app, against a real Prometheus and a real Alertmanager holding known
data (tests/app/monitoring.py): every figure is what was put in; auth, 503 (and the alerts' partial answer
without Prometheus) and 422 cases."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.app.conftest import AppServer, Env, WorkerProc, assert_error, buy, create_product, free_port
from tests.app.monitoring import (
    APP_INSTANCE,
    CACHE_HITS_PER_S,
    CACHE_MISSES_PER_S,
    DB_ACCEPTED,
    DB_CLOSED,
    FIXTURE_ALERT,
    HOSTS,
    OTHER_ENV_ALERT,
    PASSWORD,
    QUEUE_AGE,
    QUEUE_LENGTH,
    REDIS_MAX,
    REDIS_USED,
    TWICE_ALERT,
    Monitoring,
    expected_performance,
)

API = "/analytics/api"
ENDPOINTS = ("/metrics/realtime", "/metrics/performance", "/metrics/business", "/metrics/users", "/alerts")
REL = 0.02  # rates from 1 s scrapes of counters computed at scrape time: within 2 %


def close(actual: float | None, expected: float, rel: float = REL) -> bool:
    return actual is not None and actual == pytest.approx(expected, rel=rel, abs=1e-9)


@pytest.fixture(scope="module")
def console(
    redis_server: Any, ferretdb: Any, monitoring: Monitoring, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """One API process (so its cache is the only one), pointed at the known data, with a worker."""
    env = Env(
        redis_server.url,
        ferretdb.url,
        tmp_path_factory.mktemp("console"),
        prometheus_url=monitoring.prometheus_url,
        alertmanager_url=monitoring.alertmanager_url,
        low_stock_units=3,
    )
    server = AppServer(env, workers=1).start()
    worker = WorkerProc(env).start()
    yield server
    worker.stop()
    server.stop()


@pytest.fixture(scope="module")
def admin(console: AppServer) -> Iterator[httpx.Client]:
    with console.client(admin=True) as c:
        yield c


def get(client: httpx.Client, path: str, **params: str) -> dict[str, Any]:
    r = client.get(API + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_realtime_shows_each_host_against_its_own_limits_and_the_datastores(admin: httpx.Client) -> None:
    body = get(admin, "/metrics/realtime")
    hosts = {h["host"]: h for h in body["hosts"]}
    assert set(hosts) == {h.name for h in HOSTS}, body["hosts"]
    for h in HOSTS:
        shown = hosts[h.name]
        assert shown["instance"] == h.instance
        assert close(shown["cpu_ratio"], h.cpu_ratio), (h.name, shown)
        assert close(shown["memory_ratio"], h.memory_ratio), (h.name, shown)
        assert close(shown["disk_ratio"], h.disk_ratio), (h.name, shown)  # the tmpfs is left out
    assert body["database"] == {"connections": DB_ACCEPTED - DB_CLOSED}
    assert body["redis"] == {"used_bytes": REDIS_USED, "max_bytes": REDIS_MAX, "ratio": REDIS_USED / REDIS_MAX}
    assert body["queue"] == {"length": QUEUE_LENGTH, "age_seconds": QUEUE_AGE}


@pytest.mark.parametrize("window", ["5m", "1h"])
def test_performance_matches_the_known_traffic_and_leaves_out_the_metrics_scrapes(
    admin: httpx.Client, window: str
) -> None:
    body = get(admin, "/metrics/performance", window=window)
    assert body["window"] == window
    shop = [("/api/buy", "POST"), ("/api/products", "GET")]
    overall = expected_performance(shop)
    for fig, value in overall.items():
        assert close(body["overall"][fig], value), (fig, body["overall"])
    assert close(body["overall"]["cache_hit_ratio"], CACHE_HITS_PER_S / (CACHE_HITS_PER_S + CACHE_MISSES_PER_S))
    routes = {(r["route"], r["method"]): r for r in body["routes"]}
    assert set(routes) == set(shop), "the console's own routes, /metrics and /health are not the shop's"
    assert [(r["route"], r["method"]) for r in body["routes"]] == shop, "busiest route first"
    for route in shop:
        for fig, value in expected_performance([route]).items():
            assert close(routes[route][fig], value), (route, fig, routes[route])
    assert routes[("/api/products", "GET")]["error_ratio"] == 0, "no 5xx series is a ratio of 0, not no figure"
    for name in ("requests_per_minute", "p95_seconds"):
        points = body["sparklines"][name]
        assert points, f"sparkline {name} is empty"
        assert all(len(p) == 2 and p[0] > time.time() - 3700 for p in points)
    assert close(body["sparklines"]["requests_per_minute"][-1][1], overall["requests_per_minute"], rel=0.05)


@pytest.mark.parametrize("window", ["7m", "5 m", "", "1h; drop"])
def test_a_window_outside_the_allowed_set_gets_422_naming_it(admin: httpx.Client, window: str) -> None:
    r = admin.get(API + "/metrics/performance", params={"window": window})
    body = assert_error(r, 422, "validation_error", field="window")
    assert "5m" in body["message"] and "24h" in body["message"], body


def test_business_figures_come_from_the_shops_own_counters(console: AppServer, admin: httpx.Client) -> None:
    create_product(admin, "an-boots", stock=4, price=20.0)  # sold out below
    create_product(admin, "an-hats", stock=10, price=5.0)  # 3 left: low (low_stock_units=3)
    create_product(admin, "an-socks", stock=50, price=2.5)  # plenty
    create_product(admin, "an-closed", stock=5, price=1.0, open_sale=False)
    with console.client() as anon:
        for i in range(4):
            assert buy(anon, "an-boots", user=f"b{i}").status_code == 201
        for i in range(7):
            assert buy(anon, "an-hats", user=f"h{i}").status_code == 201
        assert buy(anon, "an-socks", user="s0", qty=2).status_code == 201
        for _ in range(6):
            assert anon.get("/api/products/an-socks").status_code == 200
    time.sleep(5.1)  # past the answers' cache
    body = get(admin, "/metrics/business")
    assert body["products"] == {"total": 4, "on_sale": 2, "sold_out": 1, "low_stock": 1, "low_stock_units": 3}
    revenue = 4 * 20.0 + 7 * 5.0 + 2 * 2.5
    assert body["orders"] == {"today": 12, "last_hour": 12, "total": 12}
    assert body["revenue"] == {"today": revenue, "last_hour": revenue, "total": revenue}
    assert body["average_order_value"] == {"today": round(revenue / 12, 2), "total": round(revenue / 12, 2)}
    assert [p["product_id"] for p in body["top_products"]] == ["an-boots", "an-hats", "an-socks", "an-closed"]
    socks = body["top_products"][2]
    assert socks == {
        "product_id": "an-socks",
        "name": "Product an-socks",
        "orders": 1,
        "units_sold": 2,
        "revenue": 5.0,
        "stock_left": 48,
        "conversion": round(1 / 6, 4),
    }
    assert body["conversion"] == round(12 / 6, 4), "orders over product views, as the admin stats count them"


def test_users_counts_active_windows_and_first_time_against_returning_buyers(
    console: AppServer, admin: httpx.Client
) -> None:
    r = redis.Redis.from_url(console.env.vars["SCALEMART_REDIS_URL"])
    now = time.time()
    r.hset("sm:buyers", "u-regular", int((now - 40 * 86400) * 1000))  # bought weeks ago
    r.zadd("sm:active", {"u-earlier": int((now - 30 * 60) * 1000)})  # seen half an hour ago
    before = get(admin, "/metrics/users")
    create_product(admin, "an-users", stock=100, price=1.0)
    with console.client() as anon:
        for user in ("u-new-1", "u-new-2", "u-regular"):
            assert buy(anon, "an-users", user=user).status_code == 201
        assert buy(anon, "an-users", user="u-new-1").status_code == 201  # again: still one buyer
    time.sleep(5.1)
    after = get(admin, "/metrics/users")
    midnight = now // 86400 * 86400
    for window in ("now", "last_5m", "last_hour", "today"):
        assert after["active"][window] - before["active"][window] == 3, (window, before, after)
    assert after["active"]["last_hour"] - after["active"]["last_5m"] >= 1, "the user seen 30 minutes ago"
    if now - 30 * 60 >= midnight:
        assert after["active"]["today"] >= after["active"]["last_hour"]
    grew = {k: after["buyers_today"][k] - before["buyers_today"][k] for k in ("total", "returning", "first_time")}
    assert grew == {"total": 3, "returning": 1, "first_time": 2}, (before, after)


def test_alerts_lists_alertmanagers_active_alerts_by_severity(monitoring: Monitoring, admin: httpx.Client) -> None:
    warn = monitoring.post_alert("AnalyticsTestWarning", "warning", "A warning posted by the test.", instance="a")
    crit = monitoring.post_alert("AnalyticsTestCritical", "critical", "A page posted by the test.", instance="b")
    try:
        time.sleep(5.1)
        body = get(admin, "/alerts")
        assert body["unavailable"] == {}, "both sources are up: no part is missing"
        shown = [a for a in body["active"] if a["name"].startswith("AnalyticsTest")]
        assert [a["name"] for a in shown] == ["AnalyticsTestCritical", "AnalyticsTestWarning"], "critical first"
        first = shown[0]
        assert first["severity"] == "critical" and first["state"] == "active"
        assert first["summary"] == "A page posted by the test."
        assert first["runbook_url"] == "docs/runbooks/AnalyticsTestCritical.md"
        assert first["labels"]["instance"] == "b"
        assert first["since"][:19] == crit["startsAt"][:19]
    finally:
        monitoring.resolve_alert(warn)
        monitoring.resolve_alert(crit)


def test_a_resolved_alert_is_listed_from_prometheus_history_since_its_last_firing(
    monitoring: Monitoring, admin: httpx.Client
) -> None:
    # The fixture's alert fires, resolves and fires again (rule evaluation writes a staleness marker between the
    # two, however short the gap): `since` is the second firing's start, not the first's.
    firing = f'ALERTS{{alertname="{FIXTURE_ALERT}",alertstate="firing"}}'
    monitoring.data.flag = 1
    monitoring.wait_for(firing, timeout=30)
    time.sleep(3)
    monitoring.data.flag = 0
    monitoring.wait_gone(firing, timeout=30)
    gone = time.time()
    time.sleep(1)
    monitoring.data.flag = 1
    monitoring.wait_for(firing, timeout=30)
    time.sleep(2)
    monitoring.data.flag = 0
    deadline = time.monotonic() + 40
    while True:
        time.sleep(1)
        resolved = [a for a in get(admin, "/alerts")["resolved"] if a["name"] == FIXTURE_ALERT]
        if resolved or time.monotonic() > deadline:
            break
    assert resolved, "the alert that fired and stopped is not among the resolved ones"
    alert = resolved[0]
    assert alert["severity"] == "warning"
    assert alert["summary"] == "The fixture's alert, on while a test holds its flag up."
    assert alert["runbook_url"] == f"docs/runbooks/{FIXTURE_ALERT}.md"
    assert int(gone) <= _unix(alert["since"]) < _unix(alert["resolved_at"]), (alert, gone)
    assert alert["labels"]["env"] == "test"


def test_a_resolved_alert_that_fired_twice_shows_its_last_firing_and_other_environments_are_left_out(
    monitoring: Monitoring, admin: httpx.Client
) -> None:
    # backfilled history (monitoring.PAST_ALERTS): two firings 15 minutes apart, and another environment's alert
    resolved = {a["name"]: a for a in get(admin, "/alerts")["resolved"]}
    assert TWICE_ALERT in resolved, resolved
    alert = resolved[TWICE_ALERT]
    (first_start, _), (last_start, last_end) = monitoring.data.past_alerts[TWICE_ALERT]
    assert abs(_unix(alert["since"]) - last_start) <= 1, (alert, monitoring.data.past_alerts)
    assert abs(_unix(alert["resolved_at"]) - last_end) <= 1, (alert, monitoring.data.past_alerts)
    assert _unix(alert["since"]) - first_start > 600, "since is the first firing's start, not the last's"
    assert alert["severity"] == "warning" and alert["labels"]["env"] == "test"
    assert OTHER_ENV_ALERT not in resolved, "an alert of another environment is listed: the env filter is missing"


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_the_answers_are_cached_so_many_browsers_cost_prometheus_one_round(
    monitoring: Monitoring, console: AppServer
) -> None:
    def queries_served() -> float:  # Prometheus' own count of the queries it answered
        text = httpx.get(monitoring.prometheus_base + "/metrics", auth=monitoring.auth, timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query' in line
        )

    time.sleep(5.1)
    with console.client(admin=True) as c:
        c.get(API + "/metrics/realtime")  # one round, then the cache
        start = queries_served()
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: c.get(API + "/metrics/realtime").status_code, range(30)))
    assert answers == [200] * 30
    served = queries_served() - start
    assert served <= 10, f"30 polls cost Prometheus {served} queries (one round is 10): the answers are not cached"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_needs_the_admin_credential(console: AppServer, path: str) -> None:
    with console.client() as anon:
        assert_error(anon.get(API + path), 401, "missing_credentials", field="Authorization")
        r = anon.get(API + path, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert_error(r, 401, "invalid_credentials", field="Authorization")


def test_an_unreachable_source_answers_503_naming_it_and_the_others_keep_working(
    redis_server: Any, ferretdb: Any, monitoring: Monitoring, tmp_path: Any, running: list[Any]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    no_prometheus = AppServer(
        Env(
            redis_server.url,
            ferretdb.url,
            tmp_path,
            prometheus_url=closed,
            alertmanager_url=monitoring.alertmanager_url,
        ),
        workers=1,
    ).start()
    running.append(no_prometheus)
    no_alertmanager = AppServer(
        Env(redis_server.url, ferretdb.url, tmp_path, prometheus_url=monitoring.prometheus_url), workers=1
    ).start()
    running.append(no_alertmanager)
    posted = monitoring.post_alert("AnalyticsTestWithoutPrometheus", "info", "Posted while Prometheus is away.")
    try:
        with no_prometheus.client(admin=True) as c:
            for path in ("/metrics/realtime", "/metrics/performance"):
                body = assert_error(c.get(API + path), 503, "source_unavailable", field="SCALEMART_PROMETHEUS_URL")
                assert body["details"] == {"source": "prometheus"} and closed in body["message"], body
            for path in ("/metrics/business", "/metrics/users"):
                assert c.get(API + path).status_code == 200, path
            # the active alerts need only Alertmanager; the resolved part says it is missing, with the 503 body
            body = get(c, "/alerts")
            assert "AnalyticsTestWithoutPrometheus" in {a["name"] for a in body["active"]}, body
            assert body["resolved"] is None, body
            part = body["unavailable"]["resolved"]
            assert part["error"] == "source_unavailable" and part["field"] == "SCALEMART_PROMETHEUS_URL", part
            assert part["details"] == {"source": "prometheus"} and closed in part["message"], part
    finally:
        monitoring.resolve_alert(posted)
    with no_alertmanager.client(admin=True) as c:
        body = assert_error(c.get(API + "/alerts"), 503, "source_unavailable", field="SCALEMART_ALERTMANAGER_URL")
        assert body["details"] == {"source": "alertmanager"} and "is not set" in body["message"], body
        for path in ENDPOINTS[:-1]:
            assert c.get(API + path).status_code == 200, path


def test_a_wrong_monitoring_credential_answers_503_naming_the_setting_and_never_echoes_it(
    redis_server: Any, ferretdb: Any, monitoring: Monitoring, tmp_path: Any, running: list[Any]
) -> None:
    wrong = monitoring.prometheus_url.replace(PASSWORD, "not-the-password-0123")
    bare = monitoring.prometheus_base
    server = AppServer(
        Env(
            redis_server.url,
            ferretdb.url,
            tmp_path,
            prometheus_url=wrong,
            alertmanager_url=monitoring.alertmanager_base,
        ),
        workers=1,
    ).start()
    running.append(server)
    with server.client(admin=True) as c:
        body = assert_error(
            c.get(API + "/metrics/realtime"), 503, "source_unavailable", field="SCALEMART_PROMETHEUS_URL"
        )
        assert "401" in body["message"] and "wrong credential" in body["message"], body
        assert "not-the-password" not in body["message"] and bare in body["message"], body
        # the alerts need Alertmanager, which refuses too (no credential): that is the 503, not Prometheus'
        body = assert_error(c.get(API + "/alerts"), 503, "source_unavailable", field="SCALEMART_ALERTMANAGER_URL")
        assert "401" in body["message"] and "no credential" in body["message"], body
    # the fixture's Prometheus refuses anonymous queries: the console's answers elsewhere prove it sends the credential
    assert httpx.get(bare + "/api/v1/query", params={"query": "up"}, timeout=10).status_code == 401


def test_every_series_the_console_reads_is_recorded_by_the_projects_rules(monitoring: Monitoring) -> None:
    # The console's queries name recorded series; each is in the rules the build writes (alert_rules/records.py).
    from scalemart.analytics import figures

    for record in (*figures.HOST_RECORDS.values(), *figures.REDIS_RECORDS.values(), figures.CONNECTIONS_RECORD):
        assert monitoring.query(record), f"{record} is not recorded by the project's rules"
    assert monitoring.query(f'scalemart_http_requests_total{{instance="{APP_INSTANCE}"}}')
