"""End to end: a telephone caller, joined as a SIP participant, dials a business's trunk number."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.accounts import AccountRegistry
from agent.settings import Settings
from tests.e2e_support import running_worker
from tests.test_e2e import assert_greeted, call

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker_log(livekit_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_worker(tmp_path_factory.mktemp("worker") / "worker.log") as log:
        yield log


def test_sip_telephone_caller_reaches_the_trunk_numbers_account(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    # Not the default account (harbor-dental), which a caller would reach without any routing.
    account = registry.accounts["bluebird-bikes"]
    assert account.id != Settings().default_account
    trunk = account.phone_numbers[0]
    # No account attribute and a random room name: only the trunk number names the account.
    report = call(
        tmp_path,
        "--sip",
        trunk,
        "--telephone",
        "--question",
        "Hi, are you open on Sunday?",
    )
    assert_greeted(report, account)
    (turn,) = report["turns"]
    assert turn["latency_s"] is not None
    heard = turn["answer"].lower()
    # The hours FAQ: "... and until five on Sundays" (tiny.en on narrowband audio).
    assert "sunday" in heard or "five" in heard or "seven" in heard, heard
    assert f"SIP trunk number {trunk}" in worker_log.read_text()
