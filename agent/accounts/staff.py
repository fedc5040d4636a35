"""Staff logins for the front desk: who may log in, with what password, to which accounts.

One JSON file (FIRSTWORD_STAFF_FILE), written by `python -m agent.web add-staff` and read by
the web app (logins, what each person sees) and the worker (whether anyone can take a handoff
of an account at the desk). Passwords are kept as scrypt hashes (`hashlib.scrypt`: the
standard library's binding of OpenSSL's KDF, so no extra dependency), each with its own salt.

    {"staff": [{"name": "maria", "accounts": ["harbor-dental"], "password": "scrypt$..."}]}

`accounts` is a list of account ids, or `"*"` for every account (an owner or a manager).
Readers reload the file when it changes on disk, so a login added, removed or re-passworded
takes effect without a restart (and ends that person's open sessions: see sessions.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# scrypt's cost: 2**15 x 8 x 128 bytes = 32 MiB and ~0.1 s per hash on this machine's cores,
# OWASP's recommended minimum for scrypt. A login is a rare event; a guesser is limited per
# client and per login before any hash is computed (desk.py), and at most two are computed
# at once (the web app's semaphore).
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
KEY_BYTES = 32
MIN_PASSWORD = 12
# Staff names become part of LiveKit identities (`desk-<name>-…`) and log lines.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
EVERY_ACCOUNT = "*"


class StaffFileError(ValueError):
    """The staff file (or a value for it) is wrong; the message names the file and field."""


@dataclass(frozen=True)
class Staff:
    name: str
    # Account ids, or None for every account.
    accounts: frozenset[str] | None
    password_hash: str

    def sees(self, account: str | None) -> bool:
        return account is not None and (self.accounts is None or account in self.accounts)

    def to_json(self) -> dict[str, Any]:
        accounts: str | list[str] = (
            EVERY_ACCOUNT if self.accounts is None else sorted(self.accounts)
        )
        return {"name": self.name, "accounts": accounts, "password": self.password_hash}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    """`scrypt$<n>$<r>$<p>$<salt>$<key>` (base64): the parameters travel with the hash, so
    they can be raised later without breaking the logins made before."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=KEY_BYTES,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison of the derived key; False for a malformed hash."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        derived = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, expected)


# Verified against when the name is unknown, so an unknown name takes as long as a wrong
# password and the timing does not tell which names exist.
_DUMMY_HASH: str | None = None


def dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise StaffFileError(
            f"staff name {name!r}: use 1-40 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise StaffFileError(f"a staff password must be at least {MIN_PASSWORD} characters")
    return password


def parse_accounts(text: str) -> frozenset[str] | None:
    """ "a,b" -> {"a", "b"}; "*" -> None (every account)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts == [EVERY_ACCOUNT]:
        return None
    if not parts or EVERY_ACCOUNT in parts:
        raise StaffFileError(f"--accounts {text!r}: give account ids, comma-separated, or '*'")
    return frozenset(parts)


def _parse(path: Path, text: str) -> dict[str, Staff]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StaffFileError(f"{path}: not JSON ({exc})") from exc
    entries = data.get("staff") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise StaffFileError(f'{path}: expected {{"staff": [...]}}')
    staff: dict[str, Staff] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: staff[{index}]"
        if not isinstance(entry, dict):
            raise StaffFileError(f"{where}: expected an object")
        name, accounts, password = entry.get("name"), entry.get("accounts"), entry.get("password")
        if not isinstance(name, str):
            raise StaffFileError(f"{where}.name: expected a string")
        try:
            check_name(name)
        except StaffFileError as exc:
            raise StaffFileError(f"{where}.name: {exc}") from exc
        if name in staff:
            raise StaffFileError(f"{where}.name: {name!r} is listed twice")
        if accounts == EVERY_ACCOUNT:
            scope: frozenset[str] | None = None
        elif (
            isinstance(accounts, list)
            and accounts
            and all(isinstance(a, str) and a for a in accounts)
        ):
            scope = frozenset(accounts)
        else:
            raise StaffFileError(f"{where}.accounts: expected a list of account ids, or '*'")
        if not isinstance(password, str) or not password.startswith("scrypt$"):
            raise StaffFileError(f"{where}.password: expected a scrypt hash (from add-staff)")
        staff[name] = Staff(name, scope, password)
    return staff


class StaffFile:
    """The staff file, reloaded when it changes (checked by its size and mtime: one stat)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._staff: dict[str, Staff] = {}

    def load(self) -> dict[str, Staff]:
        """Name -> staff; {} when there is no file. Blocking: call it in a thread from a loop.
        Raises StaffFileError for a broken file (naming it and the field)."""
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key != self._seen:
                self._staff = _parse(self.path, self.path.read_text(encoding="utf-8"))
                self._seen = key
            return self._staff

    def anyone_for(self, account: str) -> bool:
        return any(s.sees(account) for s in self.load().values())

    def _write(self, staff: dict[str, Staff]) -> None:
        """Atomically (a temporary file renamed over it), readable by its owner only."""
        if self.path is None:
            raise StaffFileError("FIRSTWORD_STAFF_FILE is empty: set where the logins are kept")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"staff": [s.to_json() for s in staff.values()]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".staff-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def add(
        self, name: str, password: str, accounts: frozenset[str] | None, *, replace: bool = False
    ) -> Staff:
        check_name(name)
        check_password(password)
        staff = dict(self.load())
        if name in staff and not replace:
            raise StaffFileError(
                f"staff {name!r} exists in {self.path}: pass --replace to change their "
                "password and accounts"
            )
        staff[name] = Staff(name, accounts, hash_password(password))
        self._write(staff)
        return staff[name]

    def remove(self, name: str) -> None:
        staff = dict(self.load())
        if staff.pop(name, None) is None:
            raise StaffFileError(f"no staff named {name!r} in {self.path}")
        self._write(staff)
