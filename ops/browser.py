"""Perses as an operator meets it: its API (log in, list the dashboards) and a real browser: log in,
open every dashboard, wait for its panels, read what each panel shows and save a PNG of each dashboard.

    python -m ops.browser ENV [--out DIR]      prints each dashboard's panels and the time from login
                                               to the Overview's panels painted (docs/benchmarks.md)

Headless Chromium from Debian (`chromium` + `chromium-driver`, installed by `make bootstrap`), driven by
selenium through /usr/bin/chromedriver: nothing downloads a browser or a driver. The browser shares the
machine's cores with the environment, so the timings are a ceiling, not the server's own.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dashboards.perses import PROJECT

LOGIN = "/api/auth/providers/native/login"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# No background connections: this machine's network is closed, and a browser test must not phone out.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
]
WIDTH = 1600
OVERVIEW = "scalemart-overview"

# What the page says about each panel, read in the page itself: its title, whether it is still
# loading, an error alert, and its text (for "No data").
_PANELS_JS = """
return Array.from(document.querySelectorAll('[data-testid="panel"]')).map(function (p) {
  var id = p.getAttribute('aria-labelledby');
  var header = id ? document.getElementById(id) : null;
  return {
    title: (header ? header.innerText : '').trim().split('\\n')[0],
    loading: p.querySelectorAll('[aria-label="Loading..."], .MuiSkeleton-root, .MuiCircularProgress-root,'
                                + ' .MuiLinearProgress-root').length > 0,
    error: Array.from(p.querySelectorAll('[role="alert"]')).map(function (a) { return a.innerText; }).join(' | '),
    text: p.innerText
  };
});
"""


class BrowserError(RuntimeError):
    """The browser could not be started or a page did not come up: says what to do."""


@dataclass(frozen=True)
class PanelView:
    title: str
    error: str
    no_data: bool

    @property
    def ok(self) -> bool:
        return not self.error and not self.no_data


@dataclass
class DashboardView:
    name: str
    title: str
    seconds: float  # from navigation to every panel painted
    panels: list[PanelView] = field(default_factory=list)
    screenshot: Path | None = None


@contextmanager
def chromium(*flags: str) -> Iterator[webdriver.Chrome]:
    """One headless Chromium with FLAGS (plus `flags`) and a throwaway profile; the Perses tour, the analytics
    console's browser test and its benchmark all start theirs here."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            raise BrowserError(f"{path} is missing: run `make bootstrap` (installs the Debian package {package})")
    profile = tempfile.mkdtemp(prefix="scalemart-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, *flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    except Exception as exc:  # selenium raises many kinds; all mean the same to the user
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserError(f"Chromium did not start through {CHROMEDRIVER}: {exc}") from exc
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def login(base: str, user: str, password: str, timeout: float = 30) -> httpx.Client:
    """An API client carrying the user's bearer token; waits while the server still provisions the user."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{base}{LOGIN}", json={"login": user, "password": password}, timeout=10)
            if r.status_code == 200:
                token = r.json()["access_token"]
                return httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"})
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(1)
    raise BrowserError(f"logging in to Perses at {base} as {user} failed for {timeout} s: {last}")


def dashboards(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """{name: dashboard} of the ScaleMart project, as the server serves them."""
    r = client.get(f"/api/v1/projects/{PROJECT}/dashboards")
    if r.status_code != 200:
        raise BrowserError(f"listing the dashboards of project {PROJECT}: {r.status_code} {r.text[:300]}")
    return {d["metadata"]["name"]: d for d in r.json()}


def sign_in(driver: webdriver.Chrome, base: str, user: str, password: str, timeout: float = 60) -> None:
    driver.get(f"{base}/sign-in")
    wait = WebDriverWait(driver, timeout)
    try:
        login = wait.until(lambda d: d.find_element(By.XPATH, "//label[contains(., 'Username')]/following::input[1]"))
        login.send_keys(user)
        driver.find_element(By.XPATH, "//input[@type='password']").send_keys(password)
        driver.find_element(By.XPATH, "//button[normalize-space(.)='Sign in']").click()
        wait.until(lambda d: "/sign-in" not in d.current_url)
    except TimeoutException:
        raise BrowserError(
            f"signing in to {base} as {user} did not leave the sign-in page within {timeout} s "
            f"(page says: {driver.find_element(By.TAG_NAME, 'body').text[:300]!r})"
        ) from None


def _panels(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return list(driver.execute_script(_PANELS_JS))


def page_height(dashboard: dict[str, Any]) -> int:
    """Window height that shows the whole dashboard: Perses draws a panel only once it is in view.

    Grid rows are 30 px plus a 10 px margin, each collapsible row has a ~50 px header, and the page's
    own header and the browser's frame take ~350 px.
    """
    rows = 0
    for layout in dashboard["spec"].get("layouts", []):
        items = layout["spec"].get("items", [])
        rows += max((i["y"] + i["height"] for i in items), default=0)
    return 350 + 40 * rows + 50 * len(dashboard["spec"].get("layouts", []))


def open_dashboard(
    driver: webdriver.Chrome, base: str, dashboard: dict[str, Any], timeout: float = 90, screenshot: Path | None = None
) -> DashboardView:
    """Open one dashboard in a window tall enough for all of it and wait until every panel is painted."""
    name, project = dashboard["metadata"]["name"], dashboard["metadata"]["project"]
    expected = len(dashboard["spec"]["panels"])
    driver.set_window_size(WIDTH, page_height(dashboard))
    start = time.monotonic()
    driver.get(f"{base}/projects/{project}/dashboards/{name}?start=30m&refresh=0")
    deadline = start + timeout
    panels: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        panels = _panels(driver)
        if len(panels) >= expected and not any(p["loading"] for p in panels):
            break
        time.sleep(0.25)
    else:
        loading = [p["title"] for p in panels if p["loading"]]
        raise BrowserError(
            f"dashboard {name}: {len(panels)} of {expected} panels shown after {timeout} s, still loading: {loading}"
        )
    view = DashboardView(name, driver.title, time.monotonic() - start)
    for p in panels:
        view.panels.append(PanelView(p["title"], p["error"], "No data" in (p["text"] or "")))
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        view.screenshot = screenshot
    return view


@dataclass
class Tour:
    """Every dashboard of the project, opened one after the other in one signed-in browser."""

    signed_in: float  # seconds from the sign-in page to the home page
    served: dict[str, dict[str, Any]]
    views: list[DashboardView]


def tour(base: str, user: str, password: str, out: Path) -> Tour:
    """Sign in, then open every served dashboard, Overview first (its time from sign-in is the quoted
    figure), saving a PNG of each in `out`."""
    with login(base, user, password) as client:
        served = dashboards(client)
    with chromium() as driver:
        start = time.monotonic()
        sign_in(driver, base, user, password)
        signed_in = time.monotonic() - start
        views = [
            open_dashboard(driver, base, served[name], screenshot=out / f"{name}.png")
            for name in sorted(served, key=lambda n: n != OVERVIEW)
        ]
    return Tour(signed_in, served, views)


def main(argv: list[str] | None = None) -> int:
    from ops import secrets
    from ops.__main__ import build_dir, urls

    parser = argparse.ArgumentParser(
        prog="python -m ops.browser", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("env")
    parser.add_argument("--out", type=Path, default=None, help="screenshots folder (default build/<env>/screenshots)")
    args = parser.parse_args(argv)
    base = urls(args.env).get("perses", "").rstrip("/")
    password = secrets.load(args.env).get("perses_admin_password")
    if not base or not password:
        print(f"no Perses URL or password for {args.env}: run `make up ENV={args.env}` first", file=sys.stderr)
        return 2
    out = args.out or build_dir(args.env) / "screenshots"
    try:
        result = tour(base, "admin", password, out)
    except BrowserError as exc:
        print(f"browser check failed: {exc}", file=sys.stderr)
        return 1
    for view in result.views:
        bad = [f"{p.title}: {p.error or 'No data'}" for p in view.panels if not p.ok]
        print(
            f"{view.name}: {len(view.panels)} panels painted in {view.seconds:.1f} s"
            + (f"; not ok: {bad}" if bad else "")
            + f"; {view.screenshot}"
        )
        if view.name == OVERVIEW:
            print(
                f"login → Overview painted: {result.signed_in + view.seconds:.1f} s (sign-in "
                f"{result.signed_in:.1f} s; browser, server and environment share the cores)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
