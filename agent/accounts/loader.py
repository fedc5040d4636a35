"""Loading account definitions from `config/accounts/*.yaml`.

A broken file is a deployment error: it stops the worker at start with a message naming
the file and the field, instead of surfacing as a confused call later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from .models import Account


class AccountFileError(ValueError):
    """An account file cannot be used; the message names the file and the field."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"field '{where}': {item['msg']}")
    return "; ".join(parts)


def load_account_file(path: Path) -> Account:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AccountFileError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise AccountFileError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise AccountFileError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    try:
        return Account.model_validate(raw)
    except ValidationError as exc:
        raise AccountFileError(f"{path}: {_describe(exc)}") from exc


@dataclass
class AccountRegistry:
    """All known accounts of this deployment, by id and by SIP trunk number."""

    accounts: dict[str, Account]
    default_id: str
    sources: dict[str, Path] = field(default_factory=dict)

    @property
    def default(self) -> Account:
        return self.accounts[self.default_id]

    def get(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    def by_phone_number(self, number: str) -> Account | None:
        wanted = _digits(number)
        for account in self.accounts.values():
            if any(_digits(n) == wanted for n in account.phone_numbers):
                return account
        return None


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def load_accounts(directory: Path, default_id: str) -> AccountRegistry:
    """Every `*.yaml` / `*.yml` in `directory`; raises `AccountFileError` on the first bad one."""
    if not directory.is_dir():
        raise AccountFileError(f"{directory}: accounts folder does not exist")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise AccountFileError(f"{directory}: no account files (*.yaml)")
    accounts: dict[str, Account] = {}
    sources: dict[str, Path] = {}
    for path in files:
        account = load_account_file(path)
        if account.id in accounts:
            raise AccountFileError(
                f"{path}: field 'id': {account.id!r} is already defined in {sources[account.id]}"
            )
        accounts[account.id] = account
        sources[account.id] = path
    if default_id not in accounts:
        raise AccountFileError(
            f"default account {default_id!r} (FIRSTWORD_DEFAULT_ACCOUNT) is not defined in "
            f"{directory}; known: {', '.join(sorted(accounts))}"
        )
    return AccountRegistry(accounts=accounts, default_id=default_id, sources=sources)
