"""`python agent.py console --text`, the loop LiveKit users reach for first: typed questions
get the account's answers. It runs the worker with no LiveKit server (a fake job in a stand-in
room), so it is driven through a pseudo-terminal, as a person at a keyboard would (the
console reads keys from a terminal, not lines from a pipe).

Before the fix the call ended as it began ("call timeline (caller left): first frame never
sent"): the stand-in caller is never among the stand-in room's participants, which read as a
caller who had already left.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]")


class Terminal:
    """A process on a pseudo-terminal: type into it, read what it shows."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self._master = master
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=PROJECT_ROOT
        )
        os.close(slave)
        self._raw = b""
        self.shown = ""

    def type(self, text: str) -> None:
        # Keys one at a time, reading the screen between them: the console redraws its prompt
        # after every key, and a terminal nobody reads fills up and stops it mid-question.
        self._drain(1.0)  # the prompt is drawn a moment before its key reader starts
        for char in [*text, "\r"]:
            os.write(self._master, char.encode())
            self._drain(0.03)

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._master], [], [], left)
            if not ready:
                return
            self._read()

    def _read(self) -> None:
        try:
            self._raw += os.read(self._master, 65536)
        except OSError:  # the process closed the terminal
            raise AssertionError(f"the console exited:\n{self.shown[-3000:]}") from None
        self.shown = _ESCAPES.sub(b"", self._raw).decode(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        """Read until `pattern` shows (escape codes removed), or fail with the screen so far."""
        deadline = time.monotonic() + timeout_s
        while not (match := re.search(pattern, self.shown, re.IGNORECASE)):
            left = deadline - time.monotonic()
            screen = self.shown[-3000:]
            assert left > 0, f"{pattern!r} not shown within {timeout_s:.0f} s:\n{screen}"
            ready, _, _ = select.select([self._master], [], [], min(left, 0.5))
            if ready:
                self._read()
        return match

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._master)


@pytest.fixture
def console(e2e_cache_dir: object) -> Iterator[Terminal]:
    from tests.e2e_support import ENV

    # The console opens the sound device even with --text (sounddevice needs PortAudio), and
    # a fresh machine has it only once some other package pulled it in (baresip does): the
    # console test ran before the SIP tests and failed on a clean machine.
    subprocess.run([str(PROJECT_ROOT / "scripts" / "os-packages.sh"), "libportaudio2"], check=True)
    env = {**ENV, "COLUMNS": "160", "LINES": "50", "TERM": "xterm"}
    terminal = Terminal([sys.executable, "agent.py", "console", "--text"], env)
    try:
        yield terminal
    finally:
        terminal.close()


def test_console_text_mode_answers_typed_questions(console: Terminal) -> None:
    console.wait_for(r"Type to talk to your agent", timeout_s=240)
    console.type("What time do you open on Saturdays?")
    console.wait_for(r"on Saturdays from (nine|9) to (one|1)", timeout_s=60)
    console.type("How much does a teeth cleaning cost?")
    console.wait_for(r"(one hundred and twenty|120) dollars", timeout_s=60)
    assert "caller left" not in console.shown
    # No server-side background work in console mode (there is no server to sweep).
    assert "sweep failed" not in console.shown
