"""What the browser tests share: headless Chromium with a fake microphone, and the web app
served on a loop of its own (Playwright's sync API blocks the test's thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from agent.caller.browser import CHROMIUM, chromium_args
from agent.settings import Settings
from agent.web.app import app_from_settings


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
