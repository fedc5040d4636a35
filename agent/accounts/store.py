"""The accounts folder as calls see it: loaded once, re-checked at most every few seconds.

Every known account is loaded at prewarm. A call takes the loaded set as it is unless it is
older than the TTL; then the files are stat'ed (in a thread) and, if any changed, appeared or
went away, the folder is loaded again. A folder that no longer loads (a broken edit) is
reported with the file and field, and calls keep the accounts that loaded last.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .loader import AccountFileError, AccountRegistry, load_accounts

logger = logging.getLogger("firstword.accounts")

_Stamps = dict[Path, tuple[int, int]]


def _stamps(directory: Path) -> _Stamps:
    out: _Stamps = {}
    for path in [*directory.glob("*.yaml"), *directory.glob("*.yml")]:
        try:
            stat = path.stat()
        except OSError:
            continue  # removed between the listing and the stat
        out[path] = (stat.st_mtime_ns, stat.st_size)
    return out


class AccountStore:
    """Accounts cached across calls, shared by the calls of a process."""

    def __init__(
        self,
        directory: Path,
        default_id: str,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._default_id = default_id
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        stamps = _stamps(directory) if directory.is_dir() else {}
        self._registry = load_accounts(directory, default_id)  # errors stop the worker
        self._stamps = stamps
        self._checked_at = self._clock()

    @property
    def registry(self) -> AccountRegistry:
        return self._registry

    async def current(self) -> AccountRegistry:
        """The accounts for a new call; touches the disk only when the TTL has run out."""
        if self._clock() - self._checked_at < self._ttl:
            return self._registry
        return await asyncio.to_thread(self.refresh)

    def refresh(self) -> AccountRegistry:
        """Reload the folder if any account file changed (blocking)."""
        with self._lock:
            stamps = _stamps(self._directory) if self._directory.is_dir() else {}
            if stamps != self._stamps:
                try:
                    self._registry = load_accounts(self._directory, self._default_id)
                    logger.info(
                        "accounts reloaded from %s: %s",
                        self._directory,
                        ", ".join(sorted(self._registry.accounts)),
                    )
                except AccountFileError as exc:
                    logger.error("%s; calls keep the accounts loaded before", exc)
                # Remember what we saw either way, so one broken edit logs once.
                self._stamps = stamps
            self._checked_at = self._clock()
            return self._registry
