"""`python -m agent.web`: serve the call page, the token endpoint and the front desk (loopback by
default; the desk once a staff login exists). Staff logins are managed here too:

    python -m agent.web add-staff maria --accounts harbor-dental,bluebird-bikes
    python -m agent.web add-staff owner --accounts '*'       # every account
    python -m agent.web add-staff maria --accounts harbor-dental --replace   # new password
    python -m agent.web remove-staff maria
    python -m agent.web list-staff

The password is asked twice on the terminal, or read from the first line of standard input
with `--password-stdin` (for scripts); it is never an argument, which other users of the
machine could read in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from aiohttp import web

from ..accounts import AccountFileError, load_accounts
from ..accounts.staff import StaffFile, StaffFileError, check_password, parse_accounts
from ..settings import Settings, get_settings
from ..worker.preflight import PreflightError, check_secrets
from .app import BUNDLE, app_from_settings


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    try:
        check_secrets(settings)
        staff = StaffFile(settings.staff_file).load()
    except (PreflightError, StaffFileError) as exc:
        raise SystemExit(f"firstword web: {exc}") from exc
    if not BUNDLE.is_file():
        raise SystemExit(f"{BUNDLE} is missing: build it with scripts/web-build.sh")
    base = f"http://{settings.web_host}:{settings.web_port}"
    print(f"call page: {base}/call/<account>")
    if staff:
        print(f"front desk: {base}/desk ({len(staff)} staff logins in {settings.staff_file})")
    else:
        print("front desk: closed (add a login: python -m agent.web add-staff NAME --accounts ID)")
    web.run_app(
        app_from_settings(settings), host=settings.web_host, port=settings.web_port, print=None
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    first = check_password(getpass.getpass("Password: "))
    if getpass.getpass("Again: ") != first:
        raise StaffFileError("the two passwords differ")
    return first


def add_staff(settings: Settings, args: argparse.Namespace) -> str:
    accounts = parse_accounts(args.accounts)
    if accounts is not None:
        try:
            known = load_accounts(settings.accounts_dir, settings.default_account).accounts
        except AccountFileError as exc:
            raise StaffFileError(f"cannot check --accounts: {exc}") from exc
        unknown = sorted(accounts - set(known))
        if unknown:
            raise StaffFileError(
                f"--accounts: unknown account(s) {', '.join(unknown)} "
                f"(known in {settings.accounts_dir}: {', '.join(sorted(known))})"
            )
    password = _read_password(args.password_stdin)
    staff = StaffFile(settings.staff_file).add(args.name, password, accounts, replace=args.replace)
    scope = "every account" if staff.accounts is None else ", ".join(sorted(staff.accounts))
    return f"staff {staff.name!r} can log in to the desk for {scope} ({settings.staff_file})"


def remove_staff(settings: Settings, args: argparse.Namespace) -> str:
    StaffFile(settings.staff_file).remove(args.name)
    return f"staff {args.name!r} removed; their open desk sessions end at their next request"


def list_staff(settings: Settings, _args: argparse.Namespace) -> str:
    staff = StaffFile(settings.staff_file).load()
    if not staff:
        return f"no staff logins in {settings.staff_file}: the desk is closed"
    return "\n".join(
        f"{s.name}\t{'*' if s.accounts is None else ','.join(sorted(s.accounts))}"
        for s in staff.values()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.web", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the pages and the API (the default)")
    add = commands.add_parser("add-staff", help="add a desk login (or replace one)")
    add.add_argument("name", help="the login: lowercase letters, digits, '.', '_', '-'")
    add.add_argument(
        "--accounts", required=True, help="account ids the person sees, comma-separated, or '*'"
    )
    add.add_argument("--replace", action="store_true", help="change an existing login")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    remove = commands.add_parser("remove-staff", help="remove a desk login")
    remove.add_argument("name")
    commands.add_parser("list-staff", help="the desk logins and their accounts")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command in (None, "serve"):
        serve(settings)
        return
    run = {"add-staff": add_staff, "remove-staff": remove_staff, "list-staff": list_staff}
    try:
        print(run[args.command](settings, args))
    except StaffFileError as exc:
        raise SystemExit(f"firstword web: {exc}") from exc


if __name__ == "__main__":
    main()
