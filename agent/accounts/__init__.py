"""Accounts: one per business, loaded from YAML and chosen per call."""

from .loader import AccountFileError, AccountRegistry, load_account_file, load_accounts
from .models import FAQ, Account, Voice
from .resolve import CallHints, Resolution, resolve_account
from .store import AccountStore

__all__ = [
    "FAQ",
    "Account",
    "AccountFileError",
    "AccountRegistry",
    "AccountStore",
    "CallHints",
    "Resolution",
    "Voice",
    "load_account_file",
    "load_accounts",
    "resolve_account",
]
