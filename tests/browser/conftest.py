"""The dashboard in a real browser: Debian's ``chromium`` driven by Selenium through Debian's
``chromedriver`` (both from apt; ``.ci/run`` installs them when absent), headless, at a fixed
window size, with no network beyond loopback. No Selenium Manager: the driver's path is given,
so nothing is downloaded.

The service is the web service as ``campaigns web`` serves it (``create_app`` + ``running``) on
the test's database, with real workers and the sandbox from tests/acceptance/conftest.py. The
browser logs in through the login page with a token made by ``store.create_token``.

Every browser is quit, even when its test fails, and the fixture then checks that neither the
driver nor any Chromium process of its profile outlived it. Screenshots of the pages go to
docs/dashboard/ (overwritten each run; docs/dashboard.md shows them).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.dispatch import TaskSender
from campaigns.local.stack import wait_until
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from tests.acceptance import conftest as acceptance
from tests.conftest import ROOT, require
from tests.leftovers import processes_in

# the end-to-end fixtures (real workers, a private Redis, the sandbox, the test's database)
e2e_store = acceptance.e2e_store
enqueuer = acceptance.enqueuer
private_redis = acceptance.private_redis
record = acceptance.record
record_path = acceptance.record_path
sandbox = acceptance.sandbox
sandbox_url = acceptance.sandbox_url
stack = acceptance.stack
stack_env = acceptance.stack_env

SHOTS = ROOT / "docs" / "dashboard"
"""Where the pages' screenshots go (committed; docs/dashboard.md links them)."""
WINDOW = (1280, 900)
"""The browser's fixed window, CSS pixels: screenshots and layouts are the same each run."""
MAX_SHOT_HEIGHT = 2400
"""A full-page screenshot is cut at this height (CSS pixels): the top of a long page is what
the page shows; the rest is the same rows again."""
MAX_SHOT_BYTES = 300_000
WAIT = 20.0
"""Seconds a page gets to show something (the live parts poll every ~2 s)."""
LOOPBACK_ONLY = "http://127.0.0.1:9"
"""Every request not to loopback goes to this dead proxy (Chromium never proxies loopback),
so a page that pulled a script from a CDN would fail here rather than reach the internet."""


def _binary(name: str) -> str | None:
    return shutil.which(name)


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver; skipped locally without them, a failure
    in CI (``require``)."""
    require(
        importlib.util.find_spec("selenium") is not None,
        "selenium is not installed (pip install -e '.[dev]')",
    )
    browser, driver = _binary("chromium"), _binary("chromedriver")
    require(
        browser is not None and driver is not None,
        "the browser tests need Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/run installs them)",
    )
    assert browser is not None and driver is not None
    return browser, driver


# ------------------------------------------------------------------------------- the browser


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the item: the browser fixture saves a screenshot of a
    failed test's page next to its logs."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser(
    chromium: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Any]:
    """A headless Chromium (Selenium WebDriver). Always quit; fails the test if the driver or
    a browser process of its profile is still alive afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    profile = Path(tempfile.mkdtemp(prefix="campaigns-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
        f"--proxy-server={LOOPBACK_ONLY}",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver_pid = service.process.pid
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        try:
            failed = getattr(request.node, "report_call", None)
            if failed is not None and failed.failed:
                with contextlib.suppress(Exception):
                    driver.save_screenshot(str(tmp_path / "failure.png"))
                    (tmp_path / "failure.html").write_text(driver.page_source)
                    print(f"the page at the failure: {tmp_path / 'failure.png'}")
        finally:
            driver.quit()
            _no_browser_left(profile, driver_pid)
            shutil.rmtree(profile, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _no_browser_left(profile: Path, driver_pid: int) -> None:
    """The driver and every Chromium process of ``profile`` are gone; else they are killed and
    the test fails, naming them."""

    def left() -> list[str]:
        found = [f"{p.pid}: {p.cmdline[:160]}" for p in processes_in(profile)]
        if _alive(driver_pid):
            found.append(f"{driver_pid}: chromedriver")
        return found

    try:
        wait_until(lambda: not left(), 10, "the browser's processes to exit")
    except TimeoutError:
        leftover = left()
        for proc in processes_in(profile):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(driver_pid, signal.SIGKILL)
        pytest.fail("the browser left processes running:\n" + "\n".join(leftover))


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG of the current page in docs/dashboard/NAME.png (overwritten), cut at
    MAX_SHOT_HEIGHT and scaled down until it is under MAX_SHOT_BYTES."""
    # a click scrolls a wide table's region sideways: show every page from its left edge
    driver.execute_script(
        "window.scrollTo(0, 0);"
        "document.querySelectorAll('.scroll').forEach(e => { e.scrollLeft = 0; });"
    )
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width = max(WINDOW[0], int(size["width"]))
    height = min(MAX_SHOT_HEIGHT, max(WINDOW[1], int(size["height"])))
    data = b""
    for scale in (1.0, 0.75, 0.5, 0.35):
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": scale},
            },
        )
        data = base64.b64decode(shot["data"])
        if len(data) <= MAX_SHOT_BYTES:
            break
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------- the service


@pytest.fixture
def web(e2e_store: CampaignStateManager, enqueuer: TaskSender) -> Iterator[str]:
    """The web service, as `campaigns web` serves it, on the test's database; the dashboard's
    actions queue batches and session resumes on the stack's broker and queue."""
    app = create_app(e2e_store, resume=enqueuer.resume_session, enqueue=enqueuer, env={})
    with running(app) as url:
        yield url


@pytest.fixture
def operator_token(e2e_store: CampaignStateManager) -> str:
    return e2e_store.create_token("browser-operator", "operator")


@pytest.fixture
def read_token(e2e_store: CampaignStateManager) -> str:
    return e2e_store.create_token("browser-reader", "read")


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
    """Selenium's WebDriverWait with a message naming what was awaited."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a poll or a navigation can replace what the condition was reading: ask again
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored)
    return wait.until(condition, f"timed out after {timeout:.0f}s waiting for {what}")


def login(driver: Any, base: str, token: str, then: str = "/") -> None:
    """Sign in through the login page (the token typed into its form); waits for the page
    it leads to."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login?next={then}")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.ID, "login-submit").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "scope"), "the page after the login")


def by_testid(driver: Any, testid: str, within: Any = None) -> Any:
    from selenium.webdriver.common.by import By

    return (within or driver).find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')
