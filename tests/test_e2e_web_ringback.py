"""A browser caller who joins while no agent can take the call hears the line ring, not
silence, until an agent is dispatched and greets (web/src/call.js, agent/worker/unanswered.py).

A module of its own: it needs the server with no worker registered when the caller joins
(as when every worker is full), and the web tests' module keeps a worker up throughout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import Settings
from caller.browser import silent_wav
from tests.browser_support import launch_chromium, serve_web_app, wait_for
from tests.e2e_support import URL, log_records, running_worker

pytestmark = pytest.mark.e2e


def test_a_browser_caller_with_no_agent_yet_hears_ringing_until_the_agent_greets(
    livekit_server: str, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    wav = silent_wav(tmp_path / "quiet.wav")
    settings = Settings(
        LIVEKIT_URL=URL,
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="secret",
        # Every test caller is this machine: the per-client cap is tested in test_web.py.
        FIRSTWORD_WEB_MAX_CALLS_PER_CLIENT=0,
    )
    with serve_web_app(settings) as base, playwright.sync_playwright() as p:
        browser = launch_chromium(p, wav)
        try:
            page = browser.new_page()
            page.goto(f"{base}/call/harbor-dental")
            page.click("#call")
            # No worker is registered: the dispatch made with the caller's token found nobody.
            wait_for(page, "window.firstword.ringHeardAt !== null", timeout=15_000)
            rang = page.evaluate(
                "({ringing: window.firstword.ringing, agent: window.firstword.agent,"
                " after: window.firstword.rangAt - window.firstword.joinedAt,"
                " room: window.firstword.room})"
            )
            print("the page rang", rang["after"], "ms after joining")
            assert rang["ringing"] is True and rang["agent"] is None, rang
            # A worker comes up (a slot frees): it dispatches the waiting room again, the
            # agent greets, and the ring stops before the greeting is heard.
            log = tmp_path / "worker.log"
            with running_worker(log):
                wait_for(page, "window.firstword.ttfwMs !== null", timeout=60_000)
                after = page.evaluate(
                    "({ringing: window.firstword.ringing, stopped: window.firstword.ringStoppedAt,"
                    " heard: window.firstword.heardAt})"
                )
                assert after["ringing"] is False, after
                assert after["stopped"] is not None and after["stopped"] <= after["heard"], after
                rescued = [
                    r
                    for r in log_records(log)
                    if r.get("room") == rang["room"]
                    and str(r.get("message", "")).startswith("caller had no agent")
                ]
                assert rescued, "the room was not dispatched again by the unanswered sweep"
                page.click("#hangup")
        finally:
            browser.close()
