"""Shared fixtures: settings, the demo accounts, and engines loaded once per test run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from pluggy import Result

from agent.accounts import AccountRegistry, load_accounts
from agent.engines.embedder import Embedder, load_embedder
from agent.engines.faq_llm import FaqIndex, FaqLLM
from agent.engines.local_tts import LocalTTS, load_hibari, load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import PROJECT_ROOT, Settings
from standins import Standins, start_standins

ACCOUNTS_DIR = PROJECT_ROOT / "config" / "accounts"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n N`, what scripts/test.sh runs) each test process runs its own
    LiveKit server, Redis, SIP bridge and Prometheus. Every test port is derived from
    FIRSTWORD_TEST_LIVEKIT_PORT (the highest is base + 210), so each process gets a base 300
    above the last; set before any test module (or tests/e2e_support) reads it at import."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        base = int(os.environ.get("FIRSTWORD_TEST_LIVEKIT_PORT", "7980"))
        os.environ["FIRSTWORD_TEST_LIVEKIT_PORT"] = str(base + 300 * int(worker[2:]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order the tests are shared out in (`pytest_xdist_make_scheduler` says to whom):
    the end-to-end tests first, the longest kind first, so that the short unit tests fill
    the gaps at the end instead of one long test starting last."""

    def rank(item: pytest.Item) -> int:
        module = getattr(item, "module", None)
        if item.get_closest_marker("e2e") is None:
            return 2
        return 0 if getattr(module, "SPLIT_ACROSS_PROCESSES", False) else 1

    items.sort(key=rank)


def _split_modules() -> set[str]:
    """The test modules that set `SPLIT_ACROSS_PROCESSES = True` (their tests each start what
    they need), read from their text: the scheduler runs in the controlling process, which
    imports no test module."""
    return {
        f"tests/{path.name}"
        for path in (PROJECT_ROOT / "tests").glob("test_*.py")
        if "\nSPLIT_ACROSS_PROCESSES = True\n" in path.read_text()
    }


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """How the test processes share the tests (scripts/test.sh runs two): a module's tests stay
    in one process, so a module-scoped worker, server or SIP stack starts once; a module that
    sets `SPLIT_ACROSS_PROCESSES = True` has its tests handed out one by one.

    A scheduler of our own, because `--dist loadgroup` no longer groups anything: pytest-xdist
    3.8 renames each marked test's node id to carry its group, and pytest 9 derives the node
    id from another attribute, so the rename is lost and every test was handed out alone
    (each module's worker and the SIP stack started in both processes, the second stack
    waiting for the first's lock)."""
    from xdist.scheduler import LoadScopeScheduling

    split = _split_modules()

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in split else module

    return ByModule(config, log)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def registry() -> AccountRegistry:
    return load_accounts(ACCOUNTS_DIR, "harbor-dental")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder(None, verify=True)


@pytest.fixture(scope="session")
def whisper() -> WhisperSTT:
    return WhisperSTT(load_whisper(None, threads=2, verify=True))


@pytest.fixture(scope="session")
def hibari() -> LocalTTS:
    return load_hibari(threads=2, verify=True)


@pytest.fixture(scope="session")
def piper() -> LocalTTS:
    return load_piper(None, threads=2, verify=True)


@pytest.fixture(scope="session")
def faq_llm_for(
    registry: AccountRegistry, embedder: Embedder, settings: Settings
) -> Callable[[str], FaqLLM]:
    """The answerer of a demo account, as the worker builds it."""

    def build(account_id: str) -> FaqLLM:
        account = registry.accounts[account_id]
        index = FaqIndex(embedder, list(account.faqs))
        return FaqLLM(account, index, min_score=settings.faq_min_score)

    return build


@pytest.fixture(scope="session")
def standins(hibari: LocalTTS, whisper: WhisperSTT) -> Iterator[Standins]:
    """The cloud providers' loopback stand-ins, speaking with hibari, hearing with Whisper."""
    with start_standins(
        render=hibari.render,
        rate=hibari.sample_rate,
        transcribe=lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en"),
    ) as running:
        yield running


@pytest.fixture(scope="session")
def e2e_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where end-to-end runs keep caches, recordings and the server's state: a temporary
    folder, not the repo's `.cache` (workers and callers get it through `e2e_support.ENV`)."""
    from tests.e2e_support import ENV, share_rendered_audio

    cache = tmp_path_factory.mktemp("e2e-cache")
    share_rendered_audio(cache)
    ENV["FIRSTWORD_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def livekit_server(e2e_cache_dir: Path) -> Iterator[str]:
    """The real LiveKit server on the tests' own port, started by the project's script."""
    from tests.e2e_support import ENV, URL

    script = PROJECT_ROOT / "scripts" / "livekit-server.sh"
    subprocess.run([str(script), "start"], env=ENV, check=True, timeout=600)
    yield URL
    subprocess.run([str(script), "stop"], env=ENV, check=False, timeout=30)


@pytest.fixture
def accounts_copy(tmp_path: Path) -> Path:
    """A writable copy of the demo accounts, to break on purpose."""
    target = tmp_path / "accounts"
    target.mkdir()
    for path in ACCOUNTS_DIR.glob("*.yaml"):
        (target / path.name).write_text(path.read_text())
    return target


# Tests that call in-process (the caller simulator's run_call) leave livekit's Rust FFI
# running; its exit-time teardown can abort the interpreter ("panic in a function that cannot
# unwind", exit 134) after every test has passed. Once pytest has reported, end the process
# with pytest's own status instead of running that teardown.
_exit_status = 0
_LOG_TAIL_CHARS = 6000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    """A failed test's worker logs (the `*.log` files in its tmp_path) go into its report:
    an end-to-end failure in CI is otherwise seen without what the worker said."""
    outcome = yield
    report = outcome.get_result()
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or not isinstance(tmp, Path):
        return
    for log in sorted(tmp.rglob("*.log")):
        text = log.read_text(errors="replace")
        report.sections.append(
            (f"log {log.name} (last {_LOG_TAIL_CHARS} chars)", text[-_LOG_TAIL_CHARS:])
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    ffi = sys.modules.get("livekit.rtc._ffi_client")
    if ffi is not None and getattr(ffi.FfiClient, "_instance", None) is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
