"""End to end: the real LiveKit server, the real worker, and a real caller over WebRTC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api

from agent.accounts import Account, AccountRegistry
from agent.accounts.books import MessageBook
from agent.accounts.history_store import CallHistory
from agent.call import voicemail
from agent.call.handoff.types import HandoffRequest
from agent.settings import PROJECT_ROOT
from tests.e2e_support import ENV, URL, running_worker
from tests.helpers import similarity

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker_log(livekit_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_worker(tmp_path_factory.mktemp("worker") / "worker.log") as log:
        yield log


FIRST_WORD_WITHIN_S = 1.5


def call(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"call-{time.monotonic_ns()}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "caller", "--json", str(out), *args],
        cwd=PROJECT_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.exists(), f"caller failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())["calls"][0]


def assert_greeted(report: dict, account: Account) -> None:
    assert report["ttfw_s"] is not None, "the agent never spoke"
    assert similarity(report["greeting"], account.greeting) >= 0.8, report["greeting"]


def test_call_is_greeted_answered_and_handed_off(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    account = registry.accounts["harbor-dental"]
    report = call(
        tmp_path,
        "--account",
        account.id,
        "--question",
        "How much does a teeth cleaning cost?",
        "--question",
        "Do you sell concert tickets?",
    )
    assert_greeted(report, account)
    # A behaviour bound, not a benchmark: the product's promise is the first word at once, and
    # the seed's p90 target is 1.5 s (benchmarks measure the real figure, ~0.35 s here).
    assert report["ttfw_s"] < FIRST_WORD_WITHIN_S, f"first word after {report['ttfw_s']:.2f} s"
    price, off_topic = report["turns"]
    assert price["latency_s"] is not None and off_topic["latency_s"] is not None
    heard = price["answer"].lower()
    assert "cleaning" in heard and ("120" in heard or "hundred" in heard), heard
    # This worker has no staff end (no staff logins) and the caller is not on SIP, so nobody
    # can take the handoff: the invitation to leave a message follows the handoff phrase at
    # once (the caller then hangs up without leaving one).
    request = HandoffRequest(account.id, "", "", "web", None, "no stored answer matched", "", 0.0)
    expected = f"{account.handoff_phrase} {voicemail.invitation(account, request)}"
    assert similarity(off_topic["answer"], expected) >= 0.7, off_topic["answer"]
    # The call left its record in the account's call history once it ended: both questions
    # as the agent heard them, the second the one it could not answer.
    history = CallHistory(Path(ENV["FIRSTWORD_CACHE_DIR"]) / "history")
    record: dict = {}
    for _ in range(50):
        record = next((r for r in history.latest(account.id) if r["room"] == report["room"]), {})
        if record:
            break
        time.sleep(0.2)
    assert record, "no call history record"
    assert record["caller_kind"] == "web" and record["ttfw_ms"] is not None
    assert record["handoff"] == "not_taken" and record["ended"] == "caller hung up", record
    assert [t["answered"] for t in record["turns"]] == [True, False], record["turns"]
    # Each answer's latency, as the turn's timeline measured it.
    assert all(0 < t["latency_ms"] < 10_000 for t in record["turns"]), record["turns"]
    assert record["unanswered"] == [record["turns"][1]["question"]]
    assert "concert" in record["unanswered"][0].lower(), record["unanswered"]


def test_a_caller_nobody_can_take_leaves_a_voice_message(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    account = registry.accounts["harbor-dental"]
    message = "Hi, this is Sam Lee. Please call me back on five five five, zero one nine nine."
    report = call(
        tmp_path,
        "--account",
        account.id,
        "--question",
        "Do you sell concert tickets?",
        "--question",
        message,
    )
    handoff, after_message = report["turns"]
    assert "message after the tone" in handoff["answer"].lower(), handoff["answer"]
    # The agent waited for the caller to stop, read back what it understood (the message has a
    # number: no second question), kept it, thanked them and ended the call.
    heard = after_message["answer"]
    expected = f"{voicemail.read_back(message)} {voicemail.saved_line(account)}"
    assert "understood" in heard.lower() and similarity(heard, expected) >= 0.6, report
    book = MessageBook(Path(ENV["FIRSTWORD_CACHE_DIR"]) / "messages")
    entries = [e for e in book.latest(account.id) if e["room"] == report["room"]]
    assert len(entries) == 1, entries
    (entry,) = entries
    assert entry["ended"] == "silence" and entry["caller_kind"] == "web"
    assert "concert" in entry["question"].lower(), entry
    assert similarity(entry["text"], message) >= 0.6, entry["text"]
    assert book.audio_path(account.id, entry["id"]).stat().st_size > 2 * 16000 * 2  # > 2 s
    assert "voice message kept" in worker_log.read_text()


def test_room_name_picks_the_account_and_its_voice(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    account = registry.accounts["bluebird-bikes"]
    report = call(
        tmp_path,
        "--room",
        "bluebird-bikes-e2e",
        "--question",
        "How much does it cost to rent an electric bike?",
    )
    assert_greeted(report, account)
    heard = report["turns"][0]["answer"].lower()
    assert "electric" in heard and ("50" in heard or "fifty" in heard), heard


async def _participants(room: str) -> list[str]:
    async with api.LiveKitAPI(URL, "devkey", "secret") as lkapi:
        rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
        if not rooms.rooms:
            return []
        res = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
        return [p.identity for p in res.participants]


async def test_caller_hanging_up_mid_answer_leaves_nothing_behind(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    room = f"harbor-dental-hangup-{time.monotonic_ns()}"
    report = call(
        tmp_path,
        "--room",
        room,
        "--hang-up-mid-answer",
        "--question",
        "What are your opening hours?",
    )
    assert report["hung_up_mid_answer"]
    # The agent's job ends: it leaves the room, and the server closes the room.
    for _ in range(20):
        left = await _participants(room)
        if not left:
            break
        await asyncio.sleep(0.5)
    assert left == [], f"still in the room: {left}"
    log = await asyncio.to_thread(worker_log.read_text)
    for bad in ("Traceback", "Task was destroyed", "Unclosed", "unhandled exception"):
        assert bad not in log, f"{bad!r} in the worker log:\n{log[-3000:]}"
    # And the worker takes the next call as usual.
    next_report = call(
        tmp_path, "--account", "harbor-dental", "--question", "Where are you located?"
    )
    assert_greeted(next_report, registry.default)
