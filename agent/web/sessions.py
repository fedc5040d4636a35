"""The desk's login sessions and the per-login lockout.

A session is a random token in an HttpOnly, SameSite=Strict cookie (Secure behind TLS), kept
in the web process's memory by its SHA-256 (a memory dump does not give working cookies).
Hand-written rather than aiohttp-session because its cookie storages keep the session in the
cookie itself: a logout could not end a copied cookie, nor could removing a login. Here a
session ends at its expiry, at logout, or when the person's login is removed or their
password changed (the session remembers the hash it was opened with). The price: sessions
live in one web process (a restart asks staff to log in again; several replicas need sticky
sessions), which suits a business's front desk.

`LoginLockout` counts wrong passwords per login name, wherever they come from: after a few,
the login is locked for a time that doubles with every further failure (up to a ceiling), and
the desk says so. It is asked before any password is compared, like the per-client limit.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "firstword_desk"


@dataclass
class Session:
    name: str
    password_hash: str
    expires_at: float


class Sessions:
    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = 10_000,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, name: str, password_hash: str) -> str:
        now = self._clock()
        if len(self._sessions) >= self._max:
            self._drop_expired(now)
        token = secrets.token_urlsafe(32)
        self._sessions[self._key(token)] = Session(name, password_hash, now + self.ttl_s)
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        key = self._key(token)
        session = self._sessions.get(key)
        if session is not None and session.expires_at <= self._clock():
            del self._sessions[key]
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._sessions.pop(self._key(token), None)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]
        if len(self._sessions) >= self._max:  # still full: the oldest goes
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].expires_at)]


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginLockout:
    """`free_after` failures are free; each further one locks the login for `base_s` x 2^k,
    at most `max_s`. A success clears the count."""

    def __init__(
        self,
        free_after: int = 5,
        base_s: float = 30.0,
        max_s: float = 900.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_names: int = 10_000,
    ) -> None:
        self._free = free_after
        self._base = base_s
        self._max = max_s
        self._clock = clock
        self._max_names = max_names
        self._names: dict[str, _Failures] = {}

    def locked_for(self, name: str) -> float:
        """Seconds until `name` may try again (0.0: now)."""
        failures = self._names.get(name)
        return 0.0 if failures is None else max(0.0, failures.locked_until - self._clock())

    def failed(self, name: str) -> float:
        """Count a wrong password; the seconds the login is now locked for (0.0: not)."""
        if name not in self._names and len(self._names) >= self._max_names:
            now = self._clock()
            # Names not locked any more forget their count first (an attacker spraying
            # made-up names must not push real ones out while they are locked).
            for key in [k for k, f in self._names.items() if f.locked_until <= now]:
                del self._names[key]
            if len(self._names) >= self._max_names:
                return 0.0
        failures = self._names.setdefault(name, _Failures())
        failures.count += 1
        over = failures.count - self._free
        if over <= 0:
            return 0.0
        lock = min(self._max, self._base * 2 ** (over - 1))
        failures.locked_until = self._clock() + lock
        return lock

    def succeeded(self, name: str) -> None:
        self._names.pop(name, None)
