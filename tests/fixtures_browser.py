"""Headless Chromium for the web page tests (the prediction page, its Explain switch, /docs), shared by their modules.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the ``selenium`` package. Outside
CI a module using it is skipped when they are missing (:func:`skip_without_chromium`); in CI (``CI=true``) it always
runs. Every host name but the loopback address fails to resolve in this browser, so a page that needs the network
(a CDN) shows it.
"""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_without_chromium() -> None:
    """Skip the calling test module where headless Chromium or selenium is missing (never in CI)."""
    if not IN_CI and (CHROMIUM is None or not os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium chromium-driver); it is required in CI",
            allow_module_level=True,
        )
    if not IN_CI:
        pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    if CHROMIUM:
        options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,1400",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, url: str, path: str = "/"):
    """Open the prediction page and wait until its inputs are built; the wait object, for later waits."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + path)
    wait = WebDriverWait(browser, 60)
    wait.until(ec.element_to_be_clickable((By.ID, "predict-button")))
    return wait
