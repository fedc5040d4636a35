"""The shape of one business's account, validated with pydantic."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ACCOUNT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# Where a phone caller is transferred for a person: an E.164 number (the carrier dials it) or
# a SIP URI (a desk phone or PBX the carrier can reach).
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SIP_URI = re.compile(r"^sips?:[^\s@<>]+@[^\s@<>]+$")
# The keys an account may give an answer to (0 is the handoff, agent/call/keypad.py).
KEYPAD_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#")


class FAQ(BaseModel):
    """One fact the agent may state, with the several ways callers ask for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    questions: list[str] = Field(min_length=2)
    answer: str = Field(min_length=1)

    @field_validator("questions")
    @classmethod
    def _no_blank_questions(cls, questions: list[str]) -> list[str]:
        if any(not q.strip() for q in questions):
            raise ValueError("questions must not be blank")
        return questions


class Voice(BaseModel):
    """Which local voice speaks for the business."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["hibari", "piper"] = "hibari"
    name: str = "heart"


class CloudSTT(BaseModel):
    """A cloud speech recogniser the account prefers to Whisper."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["google"]
    model: str = "latest_long"
    language: str = "en-US"


class CloudLLM(BaseModel):
    """A cloud model that answers instead of the FAQ retriever (which stays the fallback)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["gemini"]
    model: str = "gemini-2.5-flash"
    temperature: float = Field(default=0.3, ge=0, le=2)


class CloudTTS(BaseModel):
    """A cloud voice the account prefers to its local `voice`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["elevenlabs", "google"]
    # ElevenLabs: a voice id; Google: a voice name such as "en-US-Chirp3-HD-Achernar".
    voice: str = Field(min_length=1)
    # ElevenLabs model id; unused by Google.
    model: str = "eleven_flash_v2_5"
    language: str = "en-US"


class Providers(BaseModel):
    """Cloud engines in the order they are tried; the local engine is always tried last."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stt: list[CloudSTT] = Field(default_factory=list)
    llm: list[CloudLLM] = Field(default_factory=list)
    tts: list[CloudTTS] = Field(default_factory=list)

    @field_validator("stt", "llm", "tts", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        # `tts: {engine: elevenlabs, ...}` is the common case; a list gives an order.
        return [value] if isinstance(value, dict) else value


class Account(BaseModel):
    """A business that answers its calls with firstword."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ACCOUNT_ID_PATTERN)
    business_name: str = Field(min_length=1)
    greeting: str = Field(min_length=1)
    instructions: str = Field(min_length=1)
    voice: Voice = Voice()
    language: Literal["en"] = "en"
    handoff_phrase: str = Field(min_length=1)
    # SIP trunk numbers (E.164) whose calls belong to this business.
    phone_numbers: list[str] = Field(default_factory=list)
    # Phone callers asking for a person are transferred here (SIP REFER,
    # agent/call/handoff/transfer.py):
    # "+15035550111" or "sip:frontdesk@pbx.example.com". Unset: no phone transfer.
    handoff_number: str | None = None
    # How a phone caller reaches that number: "blind" (the carrier is told to transfer the
    # call, SIP REFER) or "warm" (the agent dials the person through the outbound trunk while
    # the caller holds, briefs them, and connects them only if they press 1:
    # agent/call/handoff/warm.py). Warm needs an E.164 `handoff_number`.
    handoff_transfer: Literal["blind", "warm"] = "blind"
    # Whether anything of a call is kept: its history record, a voice message (the caller
    # hears that someone will get back to them instead), the handoff record, the transcript
    # in the worker's log (even with FIRSTWORD_LOG_TRANSCRIPTS). Off: the desk still sees
    # live calls and takes them; nothing is written once they end.
    recording: bool = True
    faqs: list[FAQ] = Field(min_length=1)
    providers: Providers = Providers()
    # "auto": BVCTelephony for SIP callers and BVC for the others; needs LiveKit Cloud.
    noise_cancellation: Literal["off", "auto", "bvc", "bvc_telephony"] = "off"
    # Web callers may type to the agent (LiveKit's `lk.chat` text input, handled like speech).
    # Off: a caller's token cannot publish data either (agent/web/grants.py).
    typed_text: bool = False
    # Phone keys a caller may press (agent/call/keypad.py): a key -> the id of the FAQ whose
    # answer the agent then says, e.g. {"1": "hours"}. "0" is always "a person" (the handoff)
    # and cannot be given here.
    keypad: dict[str, str] = Field(default_factory=dict)

    @field_validator("handoff_number")
    @classmethod
    def _dialable(cls, number: str | None) -> str | None:
        if number is None:
            return None
        number = number.strip()
        if not (_E164.match(number) or _SIP_URI.match(number)):
            raise ValueError(
                f"{number!r} is neither an E.164 number (+15035550111) nor a SIP URI "
                "(sip:frontdesk@pbx.example.com)"
            )
        return number

    @field_validator("faqs")
    @classmethod
    def _unique_faq_ids(cls, faqs: list[FAQ]) -> list[FAQ]:
        seen: set[str] = set()
        for faq in faqs:
            if faq.id in seen:
                raise ValueError(f"duplicate FAQ id {faq.id!r}")
            seen.add(faq.id)
        return faqs

    @model_validator(mode="after")
    def _warm_dials_a_number(self) -> Account:
        if self.handoff_transfer != "warm":
            return self
        if not self.handoff_number or not _E164.match(self.handoff_number):
            raise ValueError(
                "handoff_transfer: warm dials handoff_number through the outbound trunk "
                "(FIRSTWORD_SIP_OUTBOUND_ADDRESS), so handoff_number must be an E.164 number "
                f"such as +15035550111 (got {self.handoff_number!r})"
            )
        return self

    @model_validator(mode="after")
    def _keys_name_faqs(self) -> Account:
        known = {faq.id for faq in self.faqs}
        for key, faq_id in self.keypad.items():
            if key not in KEYPAD_KEYS:
                raise ValueError(
                    f"keypad: {key!r} is not a key a caller can press for an answer "
                    f"(one of {' '.join(KEYPAD_KEYS)}; 0 always asks for a person)"
                )
            if faq_id not in known:
                raise ValueError(f"keypad: key {key!r} names FAQ {faq_id!r}, which is not in faqs")
        return self
