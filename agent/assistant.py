"""The Agent that speaks for one business on one call."""

from __future__ import annotations

import logging

from livekit.agents import Agent

from .accounts import Account

logger = logging.getLogger("firstword.assistant")


class Assistant(Agent):
    """A receptionist for `account`: answers from the business's facts, or hands off."""

    def __init__(self, account: Account) -> None:
        super().__init__(instructions=account.instructions)
        self.account = account
