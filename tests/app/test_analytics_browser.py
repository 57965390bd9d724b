"""The analytics console in a real browser: headless Debian Chromium (ops.browser.chromium) on the real app,
pointed at the real Prometheus and Alertmanager of tests/app/monitoring.py.

Logs in through the form, waits for every section to be filled, posts alerts to Alertmanager and watches
them appear in their severity's colour, switches the window, loses the session and logs out; without
Prometheus, its sections say so while the alerts still list the active ones. The tests share
one browser and run in file order. Screenshots go to the test's tmp dir and, when SCALEMART_SCREENSHOT_DIR is
set, there too (docs/analytics-console.png is one of them).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from ops import analytics_bench
from ops.browser import chromium
from tests.app.conftest import ADMIN_TOKEN, AppServer, Env, WorkerProc, buy, create_product, free_port
from tests.app.monitoring import HOSTS, Monitoring

SECTIONS = ("system", "performance", "business", "users", "alerts")
# the severities' backgrounds in analytics.css, as the browser computes them
COLOURS = {"critical": (254, 226, 226), "warning": (254, 243, 199), "info": (219, 234, 254)}
WAIT = 30  # polls are 5 s apart; a fresh figure may need a cache interval more

# Each section as the page shows it: its state, its error box, and every figure still showing a dash.
_SECTIONS_JS = """
return Object.fromEntries(arguments[0].map(function (id) {
  var s = document.getElementById(id), error = s.querySelector('.error');
  return [id, {state: s.dataset.state, error: error.hidden ? '' : error.textContent,
               updated: s.querySelector('.updated').textContent,
               dashes: Array.from(s.querySelectorAll('[data-field]')).filter(function (f) {
                 return f.textContent === '–'; }).map(function (f) { return f.dataset.field; })}];
}));
"""


def shoot(driver: webdriver.Chrome, tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get("SCALEMART_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", css)[:3])


def element(driver: webdriver.Chrome, by: str, what: str, timeout: float = WAIT) -> WebElement:
    try:
        return WebDriverWait(driver, timeout).until(lambda d: d.find_element(by, what))
    except TimeoutException:
        pytest.fail(
            f"no {what} on {driver.current_url} after {timeout} s; the page says: "
            f"{driver.find_element(By.TAG_NAME, 'body').text[:500]!r}"
        )


def sections(driver: webdriver.Chrome) -> dict[str, dict[str, Any]]:
    return driver.execute_script(_SECTIONS_JS, list(SECTIONS))  # type: ignore[no-any-return]


def wait_sections(driver: webdriver.Chrome, states: dict[str, str], timeout: float = WAIT) -> dict[str, Any]:
    """Until each section in `states` shows that state; fails with what every section shows."""
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: all(sections(d)[s]["state"] == state for s, state in states.items())
        )
    except TimeoutException:
        pytest.fail(f"sections not {states} after {timeout} s: {sections(driver)}")
    return sections(driver)


def log_in(driver: webdriver.Chrome, base: str, token: str = ADMIN_TOKEN) -> None:
    driver.get(f"{base}/analytics/login")
    element(driver, By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()


@pytest.fixture(scope="module")
def console(
    redis_server: Any, ferretdb: Any, monitoring: Monitoring, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """The app on the known data, with a shop that has been visited and sold: on sale, low, sold out, orders."""
    env = Env(
        redis_server.url,
        ferretdb.url,
        tmp_path_factory.mktemp("console-browser"),
        prometheus_url=monitoring.prometheus_url,
        alertmanager_url=monitoring.alertmanager_url,
    )
    server = AppServer(env).start()
    worker = WorkerProc(env).start()
    with server.client(admin=True) as admin, server.client() as shop:
        create_product(admin, "b-hat", stock=50, price=20)
        create_product(admin, "b-cap", stock=6, price=12.5)
        create_product(admin, "b-pin", stock=1, price=3)
        for product in ("b-hat", "b-hat", "b-hat", "b-cap", "b-pin"):  # views: the conversion's denominator
            assert shop.get(f"/api/products/{product}").status_code == 200
        for user, product, qty in (("ann", "b-hat", 2), ("ben", "b-hat", 1), ("ann", "b-cap", 1), ("cid", "b-pin", 1)):
            assert buy(shop, product, user=user, qty=qty).status_code == 201
    yield server
    worker.stop()
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        driver.set_window_size(1400, 1700)
        yield driver


def test_a_wrong_token_is_refused_on_the_form(browser: webdriver.Chrome, console: AppServer) -> None:
    log_in(browser, console.url, token="not-the-admin-token")
    alert = element(browser, By.CSS_SELECTOR, ".login .error")
    assert "not the admin token" in alert.text
    assert browser.current_url.endswith("/analytics/login")


def test_logging_in_through_the_form_opens_the_dashboard(browser: webdriver.Chrome, console: AppServer) -> None:
    log_in(browser, console.url)
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.endswith("/analytics/dashboard"))
    assert browser.find_element(By.ID, "logout").is_displayed()


def test_every_section_is_filled_with_figures(browser: webdriver.Chrome, console: AppServer, tmp_path: Path) -> None:
    shown = wait_sections(browser, dict.fromkeys(SECTIONS, "ok"))
    for section, view in shown.items():
        assert view["updated"].startswith("updated "), (section, view)
        assert not view["dashes"], (section, view["dashes"])
    hosts = [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "#system .hosts tbody tr")]
    assert hosts == sorted(h.name for h in HOSTS)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#system .hosts meter")) == 3 * len(HOSTS)
    routes = browser.find_elements(By.CSS_SELECTOR, "#performance .routes tbody tr")
    assert any("/api/buy" in r.text for r in routes) and not any("/metrics" in r.text for r in routes)
    top = browser.find_element(By.CSS_SELECTOR, "#business .products tbody").text
    assert "Product b-hat" in top
    # the sparklines are SVGs drawn with data (a "no data" one would still load: its title tells)
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('.sparklines img')).every(function (i) {"
            " return i.complete && i.naturalWidth > 0 && i.src.indexOf('?t=') > 0; })"
        )
    )
    svg = console.client(admin=True).get("/analytics/sparkline/requests_per_minute.svg")
    assert svg.status_code == 200 and "<polyline" in svg.text
    assert shoot(browser, tmp_path, "analytics-console-filled").stat().st_size > 20_000


def test_posted_alerts_appear_in_their_severity_colour(
    browser: webdriver.Chrome, monitoring: Monitoring, tmp_path: Path
) -> None:
    posted = {
        severity: monitoring.post_alert(
            f"BrowserTest{severity.title()}", severity, f"A {severity} alert posted by the browser test."
        )
        for severity in COLOURS
    }
    try:
        for severity, colour in COLOURS.items():
            name = f"BrowserTest{severity.title()}"
            xpath = f"//section[@id='alerts']//ul[contains(@class,'active')]/li[.//strong[text()='{name}']]"
            item = element(browser, By.XPATH, xpath)
            assert item.get_attribute("data-severity") == severity
            assert f"alert-{severity}" in (item.get_attribute("class") or "").split()
            assert rgb(item.value_of_css_property("background-color")) == colour
            assert f"A {severity} alert posted by the browser test." in item.text
        shoot(browser, tmp_path, "analytics-console")
    finally:
        for alert in posted.values():
            monitoring.resolve_alert(alert)


def test_the_window_selector_asks_the_performance_endpoint_for_that_window(browser: webdriver.Chrome) -> None:
    Select(browser.find_element(By.ID, "window")).select_by_value("1h")
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script(
            "return performance.getEntriesByType('resource').some(function (e) {"
            " return e.name.indexOf('/analytics/api/metrics/performance?window=1h') >= 0; })"
        )
    )
    wait_sections(browser, {"performance": "ok"})


def test_logging_out_lands_on_the_login_form_and_the_dashboard_stays_shut(
    browser: webdriver.Chrome, console: AppServer
) -> None:
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.endswith("/analytics/login"))
    assert browser.find_element(By.ID, "token").is_displayed()
    browser.get(f"{console.url}/analytics/dashboard")
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.endswith("/analytics/login"))


def test_a_session_lost_while_the_page_is_open_sends_it_to_the_login_form(
    browser: webdriver.Chrome, console: AppServer
) -> None:
    log_in(browser, console.url)
    wait_sections(browser, {"users": "ok"})
    browser.delete_cookie("scalemart_session")  # as its expiry would: the next poll gets 401
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.endswith("/analytics/login"))


def test_a_source_that_is_down_shows_its_message_and_the_other_sections_keep_working(
    browser: webdriver.Chrome,
    redis_server: Any,
    ferretdb: Any,
    monitoring: Monitoring,
    tmp_path: Path,
    running: list[Any],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = Env(
        redis_server.url, ferretdb.url, tmp_path, prometheus_url=closed, alertmanager_url=monitoring.alertmanager_url
    )
    server = AppServer(env, workers=1).start()
    running.append(server)
    alert = monitoring.post_alert("BrowserTestNoPrometheus", "warning", "Posted while Prometheus is away.")
    try:
        log_in(browser, server.url)
        shown = wait_sections(
            browser, {"system": "error", "performance": "error", "business": "ok", "users": "ok", "alerts": "ok"}
        )
        for section in ("system", "performance"):
            error = shown[section]["error"]
            assert "Prometheus" in error or "SCALEMART_PROMETHEUS_URL" in error, shown
        assert (
            browser.execute_script(  # the sparkline says so in its own picture
                "return document.getElementById('spark-requests_per_minute').naturalWidth"
            )
            > 0
        )
        # the alerts need Alertmanager only: the active ones are listed, the resolved part says why it is missing
        xpath = "//section[@id='alerts']//ul[contains(@class,'active')]/li[.//strong[text()='BrowserTestNoPrometheus']]"
        assert "Posted while Prometheus is away." in element(browser, By.XPATH, xpath).text
        missing = element(browser, By.CSS_SELECTOR, "#alerts ul.resolved li.unavailable")
        assert "SCALEMART_PROMETHEUS_URL" in missing.text and closed in missing.text, missing.text
        assert not browser.find_elements(By.CSS_SELECTOR, "#alerts ul.resolved li.resolved")
        shoot(browser, tmp_path, "analytics-console-prometheus-down")
    finally:
        monitoring.resolve_alert(alert)


def test_the_benchmark_times_fresh_loads_while_other_tabs_poll(console: AppServer) -> None:
    # ops/analytics_bench.py on dev; here on the test app, so the tool cannot rot between runs
    loads, calls, browser_cpu = analytics_bench.bench(console.url, ADMIN_TOKEN, tabs=2, poll_seconds=8, loads=2)
    print(f"\nbenchmark on the test app: {loads}; API calls per polling tab {calls}", file=sys.stderr)
    assert len(loads) == 2 and len(calls) == 2
    assert browser_cpu > 0, "the browser's CPU was not found: the benchmark could not say where the CPU went"
    for load in loads:
        assert 0 < load.first_byte <= load.dom_content_loaded <= load.load, load
        assert 0 < load.filled < WAIT, load
    assert all(n >= 2 * len(SECTIONS) for n in calls), calls  # the polling tabs polled at least twice meanwhile
