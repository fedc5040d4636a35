"""The front desk end to end: a caller's browser, the agent, and a staff member's browser.

Real server, real worker, real Chromium (two of them: each has its own fake microphone, fed
from a WAV). The caller asks something the business's facts do not cover; the agent says the
handoff phrase and asks for a person; the desk sees the call highlighted with the reason and
takes it; the caller's page then hears the staff member while the agent stays silent. A second
caller's handoff nobody takes ends in the no-take line, and the question is in the record.
"""

from __future__ import annotations

import json
import re
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.accounts.staff import StaffFile
from agent.call.handoff.core import NO_ANSWER_REASON
from agent.engines.local_tts import LocalTTS
from agent.settings import Settings
from tests.browser_support import launch_chromium, serve_web_app, wait_for
from tests.e2e_support import URL, log_records, worker_process
from tests.test_e2e_web import SCREENSHOTS

pytestmark = pytest.mark.e2e

PASSWORD = "desk-test-password"
# A login of another business: it must never see Harbor Dental's calls.
OTHER_PASSWORD = "bikes-desk-password"
# Long enough for the desk to see the request (1 s polls) and a staff browser to join on a
# loaded machine; the no-take test waits it out.
HANDOFF_TIMEOUT_S = 25
QUESTION = "Do you sell concert tickets?"
STAFF_LINE = "Hello, this is Maria from the front desk. How can I help you?"


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("handoff-records")


@pytest.fixture(scope="module")
def staff_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Maria works at Harbor Dental; Bo at Bluebird Bikes (made as `add-staff` makes them)."""
    path = tmp_path_factory.mktemp("staff") / "staff.json"
    StaffFile(path).add("maria", PASSWORD, frozenset({"harbor-dental"}))
    StaffFile(path).add("bo", OTHER_PASSWORD, frozenset({"bluebird-bikes"}))
    return path


@pytest.fixture(scope="module")
def worker_log(
    livekit_server: str,
    records_dir: Path,
    staff_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("desk-worker") / "worker.log"
    env = {
        "FIRSTWORD_STAFF_FILE": str(staff_file),
        "FIRSTWORD_HANDOFF_TIMEOUT": str(HANDOFF_TIMEOUT_S),
        "FIRSTWORD_HANDOFF_RECORDS": str(records_dir),
        # The call history and the voice messages next to the records, where the web app
        # reads them too.
        "FIRSTWORD_CALL_HISTORY_DIR": str(records_dir / "history"),
        "FIRSTWORD_VOICE_MESSAGES_DIR": str(records_dir / "messages"),
    }
    # Its prewarm renders every greeting into the test's fresh cache: minutes when the shared
    # machine is busy (load 25+ seen), so a longer bound than the default 120 s.
    with worker_process(log, env, within_s=300):
        yield log


@pytest.fixture(scope="module")
def web_base(worker_log: Path, records_dir: Path, staff_file: Path) -> Iterator[str]:
    """The web app (call page, token endpoint, desk) on a loop of its own: Playwright's sync API
    blocks the test's thread."""
    settings = Settings(
        LIVEKIT_URL=URL,
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="secret",
        FIRSTWORD_STAFF_FILE=staff_file,
        FIRSTWORD_HANDOFF_RECORDS=records_dir,
        FIRSTWORD_CALL_HISTORY_DIR=records_dir / "history",
        FIRSTWORD_VOICE_MESSAGES_DIR=records_dir / "messages",
        FIRSTWORD_WEB_MAX_CALLS_PER_CLIENT=0,  # every test caller is this machine
    )
    with serve_web_app(settings) as base:
        yield base


@pytest.fixture(scope="module")
def wavs(piper: LocalTTS, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("desk-wavs")
    rate = piper.sample_rate

    def write(path: Path, *parts: np.ndarray) -> Path:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(np.concatenate(parts).tobytes())
        return path

    def speech(text: str) -> np.ndarray:
        return (np.clip(piper.render(text), -1, 1) * 32767).astype(np.int16)

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(rate * seconds), np.int16)

    # Chromium loops the file, so the caller asks again every ~22 s: on a loaded machine a
    # misheard first attempt gets a second chance (and once the call is taken, nobody answers).
    question = write(folder / "question.wav", silence(6), speech(QUESTION), silence(14))
    # The staff member talks on and on: easy to hear on the caller's side.
    staff = write(folder / "staff.wav", *[speech(STAFF_LINE), silence(0.3)] * 6)
    return {"question": question, "staff": staff}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


def _records(records_dir: Path) -> list[dict[str, Any]]:
    path = records_dir / "harbor-dental.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_no_errors(log: Path) -> None:
    """No error from the call path. Excused, and only that: an idle job thread whose prewarm
    outlived the framework's 60 s limit (seen at load 40 on a shared machine) logs "error
    initializing process" with the framework's "process initialization timed out": the
    machine, not the call. Any other error of that name still fails."""

    def excused(record: dict[str, Any]) -> bool:
        return record["message"] == "error initializing process" and (
            "process initialization timed out" in str(record.get("exc_info", ""))
        )

    errors = [
        r["message"]
        for r in log_records(log)
        if r.get("level") in ("ERROR", "CRITICAL") and not excused(r)
    ]
    assert not errors, errors
    # Nor a traceback through the handoff's code (a frame reads `File ".../handoff.py", line`).
    assert not re.search(r'(handoff|desk)\.py\\?", line', log.read_text())


def _log_in(desk: Any, name: str, password: str) -> None:
    desk.fill("#name", name)
    desk.fill("#password", password)
    desk.click("#login button")


def _call_and_wait_for_handoff(page: Any, base: str) -> str:
    page.goto(f"{base}/call/harbor-dental")
    page.click("#call")
    wait_for(
        page,
        "window.firstword.transcript.some(l => l.agent && /Harbor Dental/.test(l.text))",
        timeout=90_000,
    )
    room: str = page.evaluate("window.firstword.room")
    return room


def test_desk_sees_the_handoff_takes_the_call_and_the_caller_hears_staff(
    web_base: str, wavs: dict[str, Path], playwright: Any, records_dir: Path, worker_log: Path
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    desk_browser = launch_chromium(playwright, wavs["staff"])
    caller_browser = launch_chromium(playwright, wavs["question"])
    try:
        # Notifications allowed, as the staff member would by the page's "Notify me" button;
        # each one the page shows is counted (headless Chromium shows none on a screen).
        desk = desk_browser.new_context(permissions=["notifications"]).new_page()
        desk.add_init_script(
            "window.shown = []; const Shown = window.Notification;"
            "window.Notification = class extends Shown {"
            "  constructor(title, options) { super(title, options); window.shown.push(title); } };"
        )
        # A wrong password: refused, and nothing about calls on the page.
        desk.goto(f"{web_base}/desk")
        _log_in(desk, "maria", "not-the-password")
        wait_for(desk, "document.body.dataset.state === 'refused'", timeout=10_000)
        assert "wrong name or password" in desk.inner_text("#error")
        assert desk.is_hidden("#desk")
        desk.screenshot(path=str(SCREENSHOTS / "desk-refused.png"))
        reply = desk.request.get(f"{web_base}/api/desk/calls")
        assert reply.status == 401 and "calls" not in reply.json()
        # The right one: Maria sees Harbor Dental (her only account, picked for her).
        _log_in(desk, "maria", PASSWORD)
        wait_for(desk, "window.firstwordDesk.open", timeout=10_000)
        assert desk.evaluate("window.firstwordDesk.accounts") == ["harbor-dental"]
        # The page never sees its session (HttpOnly) nor keeps the password.
        assert desk.evaluate("document.cookie") == ""
        assert (
            desk.evaluate("JSON.stringify(sessionStorage) + JSON.stringify(localStorage)") == "{}{}"
        )
        # Bo, of another business, logged in on another machine.
        other = playwright.request.new_context(base_url=web_base)

        caller = caller_browser.new_page()
        room = _call_and_wait_for_handoff(caller, web_base)
        caller.screenshot(path=str(SCREENSHOTS / "desk-flow-caller-greeted.png"))
        # The desk lists the call while the agent has it.
        wait_for(
            desk,
            f"window.firstwordDesk.calls.some(c => c.room === {json.dumps(room)})",
            timeout=20_000,
        )
        # Bo's desk never lists it, and cannot take it.
        reply = other.post("/api/desk/login", data={"name": "bo", "password": OTHER_PASSWORD})
        assert reply.status == 200
        assert room not in json.dumps(other.get("/api/desk/calls").json())
        assert other.post("/api/desk/take", data={"room": room}).status == 404
        other.dispose()
        # The caller asks what the facts do not cover: the agent says the handoff phrase, asks
        # for a person, and the desk highlights the call with the reason and the question.
        wait_for(
            desk,
            f"window.firstwordDesk.calls.some(c => c.room === {json.dumps(room)}"
            " && c.state === 'handoff requested')",
            timeout=90_000,
        )
        requested_at = time.monotonic()
        # New since the page first listed the calls: a chime and a notification.
        assert room in desk.evaluate("window.firstwordDesk.alerted")
        assert desk.evaluate("window.shown.length") == 1, desk.evaluate("window.shown")
        row = desk.locator(f"tr[data-room='{room}']")
        assert "handoff" in (row.get_attribute("class") or "")
        assert NO_ANSWER_REASON in row.inner_text()
        view = next(c for c in desk.evaluate("window.firstwordDesk.calls") if c["room"] == room)
        # The question is what the agent heard the caller say last before the handoff: on the
        # loaded shared machine Whisper has heard "Do you, so?" or "Do you sell?" / "of concert
        # tickets.", so this checks that the desk shows what was heard, not Whisper's accuracy.
        said = [line["text"] for line in view["transcript"] if line["who"] == "caller"]
        assert view["handoff"]["question"] and view["handoff"]["question"] in said, view
        assert any(line["who"] == "agent" for line in view["transcript"]), view
        desk.screenshot(path=str(SCREENSHOTS / "desk-handoff-requested.png"))
        wait_for(caller, "window.firstword.handoff === 'requested'", timeout=15_000)
        caller.screenshot(path=str(SCREENSHOTS / "desk-flow-caller-handoff.png"))

        # Take call: the staff browser joins with its microphone; the agent steps back.
        row.locator("button.take").click()
        wait_for(
            desk, "window.firstwordDesk.callState === 'talking with the caller'", timeout=30_000
        )
        assert time.monotonic() - requested_at < HANDOFF_TIMEOUT_S, "taken within the wait"
        wait_for(caller, "window.firstword.staff !== null", timeout=20_000)
        wait_for(caller, "window.firstword.handoff === 'taken'", timeout=20_000)
        taken_at = caller.evaluate("performance.now()")
        # The caller hears the staff member: at least a second of audible audio from them.
        wait_for(
            caller,
            f"(window.firstword.audio[window.firstword.staff] || [])"
            f".filter(t => t > {taken_at}).length >= 10",
            timeout=30_000,
        )
        caller.wait_for_timeout(4_000)  # the caller's question loops on; nobody answers it
        heard = caller.evaluate(
            f"""() => {{
                const c = window.firstword;
                const after = (id) => (c.audio[id] || []).filter(t => t > {taken_at}).length;
                return {{staff: after(c.staff), agent: after(c.agent), agentId: c.agent}};
            }}"""
        )
        print(f"audible 100 ms samples after the take: {heard}")
        assert heard["agentId"], "the caller's page never got the agent's track"
        assert heard["staff"] >= 10
        assert heard["agent"] == 0, "the agent spoke after the staff member took the call"
        wait_for(desk, "window.firstwordDesk.heard > 0", timeout=15_000)
        wait_for(
            desk,
            f"window.firstwordDesk.calls.some(c => c.room === {json.dumps(room)}"
            " && c.state === 'taken')",
            timeout=20_000,
        )
        caller.screenshot(path=str(SCREENSHOTS / "desk-flow-caller-taken.png"))
        desk.screenshot(path=str(SCREENSHOTS / "desk-call-taken.png"))
        desk.click("#hangup")
        caller.click("#hangup")
        # Once over, the call is in the desk's call history (read every 10 s), with the
        # question the agent could not answer.
        wait_for(
            desk,
            f"window.firstwordDesk.history.some(c => c.room === {json.dumps(room)})",
            timeout=40_000,
        )
        assert desk.evaluate("window.firstwordDesk.unanswered.length") >= 1
        assert "Questions it could not answer" in desk.inner_text("body")
        # The filters: words found in no call list none; "not answered" and the call's
        # outcome find it again.
        desk.fill("#filter-words", "zebra crossing")
        wait_for(desk, "window.firstwordDesk.history.length === 0", timeout=10_000)
        desk.fill("#filter-words", "")
        desk.check("#filter-unanswered")
        desk.select_option("#filter-outcome", "taken")
        wait_for(
            desk,
            f"window.firstwordDesk.history.some(c => c.room === {json.dumps(room)})"
            " && window.firstwordDesk.history.every(c => c.handoff === 'taken')",
            timeout=10_000,
        )
        # A question it could not answer, drafted as an FAQ entry for the account's file.
        desk.locator("#unanswered .draft-faq").first.click()
        draft = desk.locator("#unanswered textarea.draft").first.input_value()
        question = desk.evaluate("window.firstwordDesk.unanswered[0].question")
        assert "config/accounts/harbor-dental.yaml" in draft and question in draft, draft
        desk.screenshot(path=str(SCREENSHOTS / "desk-history.png"))
    finally:
        desk_browser.close()
        caller_browser.close()
    taken = [r for r in _records(records_dir) if r["room"] == room]
    assert [r["outcome"] for r in taken] == ["taken"]
    # Who took it: the login's name is in the staff identity the record keeps.
    assert taken[0]["end"] == "desk" and taken[0]["taken_by"].startswith("desk-maria-")
    # Nor did it answer in text: no agent line once it stepped back (a question that was on
    # its way when the staff member joined is dropped). The handoff phrase may end after the
    # take: the desk sees the request as the phrase begins, and the caller hears it out.
    lines = [r for r in log_records(worker_log) if r.get("room") == room]
    taken_line = next(i for i, r in enumerate(lines) if r["message"] == "agent stepped back")
    late = [
        r["message"] for r in lines[taken_line:] if r["message"].startswith("transcript assistant")
    ]
    assert not late, late
    _assert_no_errors(worker_log)


def test_handoff_nobody_takes_gets_the_no_take_line_and_a_record(
    web_base: str, wavs: dict[str, Path], playwright: Any, records_dir: Path, worker_log: Path
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    caller_browser = launch_chromium(playwright, wavs["question"])
    desk_browser = launch_chromium(playwright, wavs["staff"])
    try:
        caller = caller_browser.new_page()
        room = _call_and_wait_for_handoff(caller, web_base)
        wait_for(caller, "window.firstword.handoff === 'requested'", timeout=90_000)
        requested = caller.evaluate("performance.now()")
        # Nobody takes it: after the wait, the caller hears the no-take line (its transcript
        # shows it and the agent's track is audible again).
        wait_for(
            caller,
            "window.firstword.transcript.some(l => l.agent && /noted your question/.test(l.text))",
            timeout=(HANDOFF_TIMEOUT_S + 30) * 1000,
        )
        waited_s = (caller.evaluate("performance.now()") - requested) / 1000
        assert waited_s >= HANDOFF_TIMEOUT_S - 1, f"the no-take line came after {waited_s:.1f} s"
        wait_for(
            caller,
            f"(window.firstword.audio[window.firstword.agent] || [])"
            f".some(t => t > {requested} + {HANDOFF_TIMEOUT_S * 1000})",
            timeout=15_000,
        )
        wait_for(caller, "window.firstword.handoff === 'not_taken'", timeout=15_000)
        caller.screenshot(path=str(SCREENSHOTS / "desk-flow-caller-not-taken.png"))
        # The business's record has the caller's question; the desk shows it as a message.
        records = [r for r in _records(records_dir) if r["room"] == room]
        # (The looping question may start another attempt later: nobody takes that one either.)
        assert records and {r["outcome"] for r in records} == {"not_taken"}, records
        heard = [line["text"] for line in records[0]["transcript"] if line["who"] == "caller"]
        assert records[0]["question"] and records[0]["question"] in heard, records
        assert records[0]["reason"] == NO_ANSWER_REASON
        desk = desk_browser.new_page()
        desk.goto(f"{web_base}/desk?account=harbor-dental")
        _log_in(desk, "maria", PASSWORD)
        wait_for(
            desk,
            "window.firstwordDesk.records.some(r => r.outcome === 'not_taken')",
            timeout=10_000,
        )
        assert records[0]["question"] in desk.inner_text("#messages")
        desk.screenshot(path=str(SCREENSHOTS / "desk-messages.png"))
        # After the invitation and its tone, what the caller says (their looping question) is
        # their voice message; hanging up ends it, and the desk lists it with its audio.
        wait_for(
            caller,
            "window.firstword.transcript.some(l => l.agent && l.text === '(tone)')",
            timeout=30_000,
        )
        caller.wait_for_timeout(4000)
        caller.click("#hangup")
        wait_for(
            desk,
            "window.firstwordDesk.voiceMessages.some(m => m.ended === 'caller left')",
            timeout=40_000,
        )
        assert desk.locator("#voice-messages audio").count() >= 1
        src = desk.locator("#voice-messages audio").first.get_attribute("src")
        assert src and src.startswith("/api/desk/voice-messages/audio?account=harbor-dental")
        # The audio plays with the desk's login (the session cookie), and only with it.
        played = desk.evaluate(
            f"fetch({src!r}).then(r => [r.status, r.headers.get('content-type')])"
        )
        assert played == [200, "audio/wav"], played
        # Dealt with: "done" on the message is kept with who marked it.
        desk.locator("#voice-messages .done-box").first.check()
        wait_for(
            desk,
            "window.firstwordDesk.voiceMessages.some(m => m.done && m.done_by === 'maria')",
            timeout=15_000,
        )
        assert desk.locator("#voice-messages li.done").count() >= 1
        desk.screenshot(path=str(SCREENSHOTS / "desk-voice-messages.png"))
    finally:
        caller_browser.close()
        desk_browser.close()
    _assert_no_errors(worker_log)
