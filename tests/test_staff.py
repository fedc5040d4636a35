"""Staff logins: the hash, the file, the commands that manage it, and session expiry."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from agent.accounts.staff import (
    StaffFile,
    StaffFileError,
    hash_password,
    parse_accounts,
    verify_password,
)
from agent.settings import Settings
from agent.web.__main__ import main
from agent.web.sessions import LoginLockout, Sessions
from agent.worker.preflight import PreflightError, check_secrets
from tests.conftest import ACCOUNTS_DIR
from tests.test_web import Clock

PASSWORD = "correct horse battery staple"


def test_a_password_is_kept_as_a_salted_scrypt_hash() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("scrypt$32768$8$1$") and PASSWORD not in first
    assert first != second, "each hash has its own salt"
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + "!", first)
    assert not verify_password(PASSWORD, "scrypt$broken") and not verify_password(PASSWORD, "")


def test_the_file_keeps_no_password_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    staff = StaffFile(tmp_path / "staff.json")
    staff.add("maria", PASSWORD, frozenset({"harbor-dental"}))
    text = (tmp_path / "staff.json").read_text()
    assert PASSWORD not in text
    assert stat.S_IMODE((tmp_path / "staff.json").stat().st_mode) == 0o600
    assert staff.anyone_for("harbor-dental") and not staff.anyone_for("bluebird-bikes")
    with pytest.raises(StaffFileError, match="--replace"):
        staff.add("maria", PASSWORD, None)
    with pytest.raises(StaffFileError, match="at least 12"):
        staff.add("ana", "short", None)
    with pytest.raises(StaffFileError, match="staff name 'Ana Maria'"):
        staff.add("Ana Maria", PASSWORD, None)
    assert parse_accounts("*") is None and parse_accounts("a, b") == {"a", "b"}
    with pytest.raises(StaffFileError):
        parse_accounts("a,*")


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("{", "not JSON"),
        ('{"people": []}', '{"staff": [...]}'),
        ('{"staff": [{"name": "maria", "accounts": [], "password": "scrypt$x"}]}', "accounts"),
        ('{"staff": [{"name": "maria", "accounts": "*", "password": "hunter2"}]}', "password"),
        ('{"staff": [{"name": "Maria!", "accounts": "*", "password": "scrypt$x"}]}', "name"),
    ],
)
def test_a_broken_staff_file_names_the_file_and_field(
    tmp_path: Path, body: str, names: str
) -> None:
    path = tmp_path / "staff.json"
    path.write_text(body)
    with pytest.raises(StaffFileError) as error:
        StaffFile(path).load()
    assert str(path) in str(error.value) and names in str(error.value)


def _settings(monkeypatch: pytest.MonkeyPatch, staff: Path) -> None:
    settings = Settings(FIRSTWORD_STAFF_FILE=staff, FIRSTWORD_ACCOUNTS_DIR=ACCOUNTS_DIR)
    monkeypatch.setattr("agent.web.__main__.get_settings", lambda: settings)


def test_the_staff_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    staff = tmp_path / "staff.json"
    _settings(monkeypatch, staff)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    main(["add-staff", "maria", "--accounts", "harbor-dental", "--password-stdin"])
    assert "'maria' can log in to the desk for harbor-dental" in capsys.readouterr().out
    entry = json.loads(staff.read_text())["staff"][0]
    assert entry["name"] == "maria" and entry["accounts"] == ["harbor-dental"]
    assert verify_password(PASSWORD, entry["password"])
    # An account that does not exist is named, with the ones that do.
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    with pytest.raises(SystemExit, match=r"unknown account\(s\) harbour-dental .*harbor-dental"):
        main(["add-staff", "ana", "--accounts", "harbour-dental", "--password-stdin"])
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit, match="at least 12"):
        main(["add-staff", "ana", "--accounts", "*", "--password-stdin"])
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    main(["add-staff", "owner", "--accounts", "*", "--password-stdin"])
    capsys.readouterr()
    main(["list-staff"])
    assert capsys.readouterr().out.split("\n")[:2] == ["maria\tharbor-dental", "owner\t*"]
    main(["remove-staff", "maria"])
    with pytest.raises(SystemExit, match="no staff named 'maria'"):
        main(["remove-staff", "maria"])
    assert list(StaffFile(staff).load()) == ["owner"]


def test_sessions_expire_and_lockouts_are_bounded() -> None:
    clock = Clock()
    sessions = Sessions(60, clock=clock)
    token = sessions.open("maria", "hash")
    assert (session := sessions.get(token)) is not None and session.name == "maria"
    assert sessions.get("made-up") is None and sessions.get(None) is None
    clock.now += 61
    assert sessions.get(token) is None, "expired"
    lockout = LoginLockout(free_after=2, base_s=10, max_s=40, clock=clock)
    assert [lockout.failed("maria") for _ in range(6)] == [0, 0, 10, 20, 40, 40]
    assert lockout.locked_for("maria") == 40 and lockout.locked_for("ana") == 0
    lockout.succeeded("maria")
    assert lockout.locked_for("maria") == 0


def test_the_old_shared_desk_password_stops_the_start() -> None:
    with pytest.raises(PreflightError, match="add-staff") as error:
        check_secrets(Settings(FIRSTWORD_DESK_SECRET="correct horse battery"))
    assert "correct horse" not in str(error.value)
    check_secrets(Settings(FIRSTWORD_DESK_SECRET=""))
    assert Settings(FIRSTWORD_STAFF_FILE="").staff_file is None
