"""The dashboards on dev in a real browser (headless Debian Chromium through selenium), after the load
tests of test_load.py have run: log in with the generated password, open every dashboard, wait for its
panels, and fail on any panel that shows an error or "No data" (but the few that rightly stay empty on a
healthy shop, coverage.EMPTY_WHEN_HEALTHY). A PNG of each dashboard lands in build/dev/screenshots.

Runs after test_load.py (file order), so the business panels have orders to show.
"""

from __future__ import annotations

import sys

from alert_rules.coverage import EMPTY_WHEN_HEALTHY
from dashboards import render_all
from dashboards.perses import PROJECT
from ops import browser, secrets
from tests.e2e.conftest import ENV, ENV_BUILD, Dev


def test_every_dashboard_paints_every_panel_with_data_in_chromium(dev: Dev) -> None:
    base = dev.outputs["urls"]["perses"].rstrip("/")
    password = secrets.load(ENV)["perses_admin_password"]
    result = browser.tour(base, "admin", password, ENV_BUILD / "screenshots")
    assert len(result.served) == len(render_all()), sorted(result.served)
    bad: list[str] = []
    for view in result.views:
        print(f"\n{view.name}: {len(view.panels)} panels painted in {view.seconds:.1f} s", file=sys.stderr)
        assert len(view.panels) == len(result.served[view.name]["spec"]["panels"]), view.name
        bad += [
            f"{view.name} / {p.title}: {p.error or 'No data'}"
            for p in view.panels
            if not p.ok and p.title not in EMPTY_WHEN_HEALTHY
        ]
        assert view.screenshot is not None and view.screenshot.stat().st_size > 10_000, view.screenshot
    assert not bad, "panels showing an error or No data in the browser:\n" + "\n".join(bad)


def test_the_browser_is_sent_to_the_sign_in_page_without_a_login(dev: Dev) -> None:
    base = dev.outputs["urls"]["perses"].rstrip("/")
    with browser.chromium() as driver:
        driver.get(f"{base}/projects/{PROJECT}/dashboards/{browser.OVERVIEW}")
        browser.WebDriverWait(driver, 30).until(lambda d: "/sign-in" in d.current_url)
        assert "Username" in driver.find_element(browser.By.TAG_NAME, "body").text
