"""The analytics console's load time while other browsers poll it ("the page loads in under 1 s on dev with
5 open browsers polling"), through the balancer.

    python -m ops.analytics_bench ENV [--tabs 5] [--poll-seconds 30] [--loads 5] [--goal 1.0]

One headless Chromium (ops.browser.chromium) logs in through the form with the admin token, opens `--tabs`
dashboards that keep polling (every 5 s, 7 requests each), lets them poll for `--poll-seconds`, then loads the
dashboard `--loads` times in one more tab and prints, per load, Navigation Timing (first byte,
DOMContentLoaded, load) and the time until all five sections are filled (the page's `analytics:<id>:ok`
marks, set when a section first turns data-state="ok"). The first load is as cold as the shared browser cache
allows (the polling tabs have fetched the script and style already); the others are reloads. Exits 1 when the
median time to five filled sections is above --goal.

The browser shares the machine's cores with the environment it measures, so the figures are a ceiling.
One client's polls count against the API's per-client rate limit (SCALEMART_RATE_LIMIT_REQUESTS per
SCALEMART_RATE_LIMIT_WINDOW_SECONDS, 100 per 10 s by default): 6 tabs make about 84 requests per 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ops.browser import BrowserError, chromium

LOGIN, DASHBOARD = "/analytics/login", "/analytics/dashboard"
SECTIONS = ("system", "performance", "business", "users", "alerts")
# Background tabs must keep polling at the page's pace, as separate browsers would.
UNTHROTTLED = (
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)

# Times in ms from the navigation's start; a section that has not been filled yet is null.
_TIMING_JS = """
var nav = performance.getEntriesByType('navigation')[0];
return {first_byte: nav ? nav.responseStart : null, dom: nav ? nav.domContentLoadedEventEnd : null,
        load: nav && nav.loadEventEnd ? nav.loadEventEnd : null,
        filled: arguments[0].map(function (id) {
          var m = performance.getEntriesByName('analytics:' + id + ':ok'); return m.length ? m[0].startTime : null; }),
        errors: arguments[0].filter(function (id) {
          return document.getElementById(id).dataset.state === 'error'; }).map(function (id) {
          return id + ': ' + document.querySelector('#' + id + ' .error').textContent; })};
"""
_API_CALLS_JS = """
return performance.getEntriesByType('resource').filter(function (e) {
  return e.name.indexOf('/analytics/api/') >= 0; }).length;
"""


@dataclass(frozen=True)
class Load:
    first_byte: float  # seconds from the navigation's start
    dom_content_loaded: float
    load: float
    filled: float  # all five sections data-state="ok"


def log_in(driver: webdriver.Chrome, base: str, token: str, timeout: float = 30) -> None:
    driver.get(base + LOGIN)
    try:
        WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.ID, "token")).send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        WebDriverWait(driver, timeout).until(lambda d: d.current_url.endswith(DASHBOARD))
    except TimeoutException:
        raise BrowserError(
            f"logging in at {base}{LOGIN} did not reach the dashboard within {timeout} s (page says: "
            f"{driver.find_element(By.TAG_NAME, 'body').text[:300]!r}); is the admin token "
            "right (`make credentials`)?"
        ) from None


def wait_filled(driver: webdriver.Chrome, timeout: float = 30) -> Load:
    """Until every section has been filled once; fails naming the sections that show an error."""
    deadline = time.monotonic() + timeout
    timing: dict[str, Any] = {}
    while time.monotonic() < deadline:
        timing = driver.execute_script(_TIMING_JS, list(SECTIONS))
        if all(t is not None for t in timing["filled"]) and timing["load"] is not None:
            return Load(
                timing["first_byte"] / 1000, timing["dom"] / 1000, timing["load"] / 1000, max(timing["filled"]) / 1000
            )
        time.sleep(0.05)
    raise BrowserError(
        f"the dashboard at {driver.current_url} was not filled within {timeout} s; "
        f"sections in error: {timing.get('errors') or 'none (still loading)'}"
    )


BROWSER_PROCESSES = ("chromium", "chrome", "chromedriver")


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy so far (guest time is inside user)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def browser_seconds() -> float:
    """CPU seconds of every browser and driver process alive now (they all started with this run)."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if (proc.info["name"] or "").startswith(BROWSER_PROCESSES) and proc.info["cpu_times"] is not None:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def bench(base: str, token: str, tabs: int, poll_seconds: float, loads: int) -> tuple[list[Load], list[int], float]:
    """The fresh loads' timings, how many API calls each polling tab made meanwhile, and the browser's CPU
    seconds (read before it quits)."""
    with chromium(*UNTHROTTLED) as driver:
        driver.set_window_size(1400, 1700)
        log_in(driver, base, token)
        wait_filled(driver)
        pollers = [driver.current_window_handle]
        for _ in range(tabs - 1):
            driver.switch_to.new_window("tab")
            driver.get(base + DASHBOARD)
            wait_filled(driver)
            pollers.append(driver.current_window_handle)
        time.sleep(poll_seconds)
        driver.switch_to.new_window("tab")
        results = []
        for _ in range(loads):
            driver.get(base + DASHBOARD)
            results.append(wait_filled(driver))
        calls = []
        for handle in pollers:
            driver.switch_to.window(handle)
            calls.append(int(driver.execute_script(_API_CALLS_JS)))
        browser_cpu = browser_seconds()
    return results, calls, browser_cpu


def main(argv: list[str] | None = None) -> int:
    from ops import secrets
    from ops.__main__ import urls

    parser = argparse.ArgumentParser(
        prog="python -m ops.analytics_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("env")
    parser.add_argument("--tabs", type=int, default=5, help="dashboards left polling meanwhile (default 5)")
    parser.add_argument("--poll-seconds", type=float, default=30, help="how long they poll first (default 30)")
    parser.add_argument("--loads", type=int, default=5, help="fresh loads timed (default 5)")
    parser.add_argument("--goal", type=float, default=1.0, help="median seconds to five filled sections (1.0)")
    args = parser.parse_args(argv)
    base = urls(args.env).get("shop", "").rstrip("/")
    token = secrets.load(args.env).get("scalemart_admin_token")
    if not base or not token:
        print(f"no shop URL or admin token for {args.env}: run `make up ENV={args.env}` first", file=sys.stderr)
        return 2
    started, busy_before = time.monotonic(), busy_seconds()
    try:
        loads, calls, browser_cpu = bench(base, token, max(args.tabs, 1), args.poll_seconds, max(args.loads, 1))
    except BrowserError as exc:
        print(f"analytics benchmark failed: {exc}", file=sys.stderr)
        return 1
    for i, load in enumerate(loads, 1):
        print(
            f"load {i}: first byte {load.first_byte * 1000:.0f} ms, DOMContentLoaded "
            f"{load.dom_content_loaded * 1000:.0f} ms, load {load.load * 1000:.0f} ms, "
            f"five sections filled {load.filled * 1000:.0f} ms"
        )
    median = statistics.median(load.filled for load in loads)
    print(
        f"median five sections filled {median * 1000:.0f} ms (max {max(load.filled for load in loads) * 1000:.0f} "
        f"ms) with {len(calls)} tabs polling ({', '.join(map(str, calls))} API calls each in "
        f"{time.monotonic() - started:.0f} s); goal {args.goal:g} s: {'met' if median <= args.goal else 'MISSED'}"
    )
    wall = time.monotonic() - started
    available, busy = wall * (psutil.cpu_count() or 1), busy_seconds() - busy_before
    print(
        f"where the CPU went: {busy:.0f} of {available:.0f} core-seconds busy ({100 * busy / available:.0f} %); the "
        f"browser {browser_cpu:.0f} s ({100 * browser_cpu / available:.0f} %), the environment and the rest "
        f"{busy - browser_cpu:.0f} s ({100 * (busy - browser_cpu) / available:.0f} %)"
        + (
            "; the machine was saturated: the figures are the browser's as much as the server's"
            if busy > 0.9 * available
            else ""
        )
    )
    print("the browser shares the machine's cores with the environment: a ceiling, not the server's own speed")
    return 0 if median <= args.goal else 1


if __name__ == "__main__":
    sys.exit(main())
