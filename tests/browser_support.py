"""What the browser tests share: headless Chromium with a fake microphone, and the web app
served on a loop of its own (Playwright's sync API blocks the test's thread)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from agent.settings import Settings
from agent.web.app import app_from_settings
from caller.browser import CHROMIUM, chromium_args


def wait_for(page: Any, expression: str, timeout: float = 30_000) -> None:
    """Playwright's `wait_for_function`, under the pages' Content-Security-Policy.

    `wait_for_function` polls by compiling the expression inside the page (`new Function`),
    which the pages' CSP forbids (no 'unsafe-eval': agent/web/headers.py); `evaluate` runs
    through the DevTools protocol, which a CSP does not govern. So the tests keep the CSP on
    (a page that breaks under it fails them) and poll from here."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still false after {timeout / 1000:.0f} s")
        page.wait_for_timeout(100)


def launch_chromium(playwright: Any, wav: Path) -> Any:
    """The OS package's Chromium, its microphone looping `wav`."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=chromium_args(wav)
    )


@contextmanager
def serve_web_app(settings: Settings) -> Iterator[str]:
    """The web app (call page, token endpoint, desk) on a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    server = TestServer(app_from_settings(settings), host="127.0.0.1")
    loop.run_until_complete(server.start_server())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
