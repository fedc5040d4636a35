"""A business's books on disk: one JSON line per entry, one file per account.

Plain append-only files because a worker writes a line per event (a handoff, a call) and the
desk reads the latest ones; the folder can be a shared volume where the web app runs on
another machine. Blocking: call from a thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import wave
from pathlib import Path
from typing import Any


class AccountBook:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, account_id: str) -> Path:
        return self.directory / f"{account_id}.jsonl"

    def write(self, account_id: str, entry: dict[str, Any]) -> None:
        """Append one entry to the account's file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.path(account_id).open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def latest(self, account_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` entries of an account, newest first (a damaged line is skipped).

        Read from the end of the file, a block at a time, until it holds `limit` lines: the
        desk asks every few seconds, and a busy account's book grows by a line per call for
        as long as it is kept (the whole file was read before)."""
        path = self.path(account_id)
        if not path.is_file() or limit <= 0:
            return []
        entries: list[dict[str, Any]] = []
        for line in _last_lines(path, limit):
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries[::-1]


READ_BLOCK = 64 * 1024


def _last_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a UTF-8 file, oldest first, reading only its tail."""
    with path.open("rb") as book:
        book.seek(0, 2)
        position = book.tell()
        tail = b""
        # One line more than asked: the first may be cut by the block boundary.
        while position > 0 and tail.count(b"\n") <= count:
            step = min(READ_BLOCK, position)
            position -= step
            book.seek(position)
            tail = book.read(step) + tail
    lines = tail.decode("utf-8", errors="replace").splitlines()
    if position > 0:
        lines = lines[1:]  # started mid-line
    return lines[-count:]


# A voice message's id: the file name of its audio, and what the desk asks for.
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Voice messages are kept as 16-bit mono at Whisper's rate: plenty for a voice.
MESSAGE_RATE = 16000
# Marks read back when listing messages: the newest, far more than the 50 messages shown.
MARKS_READ = 5000


class MessageBook(AccountBook):
    """The account's voice messages: a JSON line each in `<dir>/<account>.jsonl` (newest read
    first, agent/accounts/books.py) and its audio in `<dir>/<account>/<id>.wav`."""

    def audio_path(self, account_id: str, message_id: str) -> Path:
        """Where a message's audio is; a ValueError for an id that is not one of ours (the
        desk passes ids from requests: no other file can be named through it)."""
        if not MESSAGE_ID.match(message_id):
            raise ValueError(f"not a message id: {message_id!r}")
        return self.directory / account_id / f"{message_id}.wav"

    def save(self, account_id: str, entry: dict[str, Any], pcm: bytes) -> None:
        """Blocking: the audio first, then the line that points to it."""
        path = self.audio_path(account_id, str(entry["id"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav_bytes(pcm, MESSAGE_RATE))
        self.write(account_id, entry)

    def marks_path(self, account_id: str) -> Path:
        return self.directory / f"{account_id}.done.jsonl"

    def mark(self, account_id: str, message_id: str, *, done: bool, by: str, at: float) -> None:
        """Staff marked a message done (or not done again): one line in a book of its own
        beside the messages, so the messages' lines are never rewritten; the last mark of a
        message wins. A ValueError for an id that is not one of ours."""
        self.audio_path(account_id, message_id)  # validates the id
        self.directory.mkdir(parents=True, exist_ok=True)
        line = {"id": message_id, "done": done, "by": by, "at": at}
        with self.marks_path(account_id).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")

    def latest(self, account_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest messages, newest first, each with `done` (and who marked it, when)."""
        entries = super().latest(account_id, limit)
        marks: dict[str, dict[str, Any]] = {}
        path = self.marks_path(account_id)
        if entries and path.is_file():
            for line in _last_lines(path, MARKS_READ):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    mark = json.loads(line)
                    marks[str(mark["id"])] = mark
        for entry in entries:
            mark = marks.get(str(entry.get("id")), {})
            entry["done"] = bool(mark.get("done", False))
            entry["done_by"] = mark.get("by") if entry["done"] else None
            entry["done_at"] = mark.get("at") if entry["done"] else None
        return entries


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """16-bit mono PCM as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()
