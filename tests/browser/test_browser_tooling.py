"""The browser the dashboard tests drive: Debian's headless Chromium reaches the web service on
loopback and nothing beyond it, and leaves no process behind (the fixture checks)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_headless_chromium__reaches_the_service_on_loopback_and_nothing_else(
    browser: Any, web: str
) -> None:
    from selenium.common.exceptions import WebDriverException

    browser.get(f"{web}/healthz")
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.get_window_size() == {"width": 1280, "height": 900}
    assert '"ok":true' in browser.page_source.replace(" ", "")
    with pytest.raises(WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
        browser.get("http://example.com/")
