"""A business's books on disk: one JSON line per entry, one file per account.

Plain append-only files because a worker writes a line per event (a handoff, a call) and the
desk reads the latest ones; the folder can be a shared volume where the web app runs on
another machine. Blocking: call from a thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import json
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
        """The newest `limit` entries of an account, newest first (a damaged line is skipped)."""
        path = self.path(account_id)
        if not path.is_file():
            return []
        entries: list[dict[str, Any]] = []
        for line in path.read_text(encoding="utf-8").splitlines()[-limit:]:
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries[::-1]
