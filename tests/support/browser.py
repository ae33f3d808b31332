"""A real browser for the dashboard tests: Debian's Chromium, headless,
driven through its own chromedriver by Selenium (nothing is downloaded).

Every call runs in a thread, so the test's event loop (and the stand-in peers
it serves) keeps going while the browser waits. Screenshots go to
``test-artifacts/screenshots/`` (or ``$ORCH_ARTIFACTS/screenshots/``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.support.services import ROOT

T = TypeVar("T")
SCREENSHOTS = Path(os.environ.get("ORCH_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"


def _installed() -> tuple[str, str]:
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        subprocess.run([str(ROOT / "scripts" / "services"), "up", "tools"], check=True)
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver are not installed"
    return chromium, driver


class Browser:
    def __init__(self, base_url: str) -> None:
        chromium, driver = _installed()
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--disable-gpu"):
            options.add_argument(argument)
        # Chromium's profile and its singleton socket go in a folder of this
        # browser's, removed on close (in /tmp they were left behind).
        self._tmp = tempfile.mkdtemp(prefix="orch-chromium-")
        self.driver = webdriver.Chrome(service=Service(driver, env={**os.environ, "TMPDIR": self._tmp}),
                                       options=options)
        self.base_url = base_url
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def _do(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str) -> None:
        await self._do(self.driver.get, self.base_url + path)

    async def text(self) -> str:
        return str(await self._do(lambda: self.driver.find_element(By.TAG_NAME, "body").text))

    async def find(self, css: str) -> WebElement:
        return await self._do(self.driver.find_element, By.CSS_SELECTOR, css)

    async def find_all(self, css: str) -> list[WebElement]:
        return list(await self._do(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def type_and_send(self, css: str, text: str, button: str) -> None:
        def act() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(text)
            self.driver.find_element(By.CSS_SELECTOR, button).click()

        await self._do(act)

    async def click(self, css: str) -> None:
        await self._do(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def script(self, source: str) -> Any:
        return await self._do(self.driver.execute_script, source)

    async def url(self) -> str:
        return str(await self._do(lambda: self.driver.current_url))

    async def shot(self, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        await self._do(self.driver.save_screenshot, str(path))
        return path

    async def wait_for_text(self, text: str, timeout: float = 60, reload: bool = False) -> str:
        """Until the page shows ``text`` (the dashboard refreshes itself; ``reload`` reloads too)."""
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            try:
                body = await self.text()
            except WebDriverException:  # between two pages: no body yet
                body = ""
            if text in body:
                return body
            await asyncio.sleep(0.5)
            if reload:
                await self._do(self.driver.refresh)
        raise AssertionError(f"the page never showed {text!r}; it shows:\n{body[-2000:]}")

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
