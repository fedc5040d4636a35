"""What the local answerer says to a caller who asked nothing: "hold on", "thanks, bye", "hello?".

The FAQ answerer (engines/faq_llm.py) answers from the business's facts and hands off what it
cannot match. Callers also say things that are not questions, and handing those off is wrong:
"Wait, wait, hold on a second." said over an answer stopped the agent (agent/call/barge_in.py)
and was then answered with the handoff phrase, so a caller who asked for a moment was put
through to the desk (issue 25's measurement). Said only when no FAQ matched, and never when the
caller asks for a person ("hold on, can I talk to someone?" is a handoff):
- a request for a moment ("hold on", "one second", "let me check") -> `HOLD_REPLY`;
- thanks or goodbye ("thanks, that's all", "okay bye") -> `closing_reply()`;
- checking the line ("hello?", "are you there?") -> `PRESENCE_REPLY`.

Word rules, not a model: the three are short, closed sets of phrasings; a rule says exactly
which words it took, and costs nothing on the answer path.
"""

from __future__ import annotations

import re

HOLD_REPLY = "Sure, take your time."
PRESENCE_REPLY = "Yes, I'm here. How can I help you?"

# A caller who asks for a person wants a person, whatever else they say.
_PERSON = re.compile(
    r"\b(person|human|someone|somebody|anyone who|receptionist|staff|representative|operator|"
    r"real people|manager|transfer)\b"
)
_HOLD = re.compile(
    r"\b(hold on|hang on|wait|one (moment|second|sec|minute)|a (moment|second|sec|minute)|"
    r"just a (moment|second|sec|minute)|give me a|let me (check|think|see|find|look|get|grab)|"
    r"bear with me)\b"
)
_CLOSING = re.compile(
    r"\b(thanks|thank you|thank|bye|goodbye|good bye|that's all|that is all|that's it|"
    r"nothing else|have a (good|nice) (day|one))\b"
)
_PRESENCE = re.compile(
    r"^(hello|hi|hey)\b|\b(anyone there|anybody there|are you there|you still there|"
    r"can you hear me|is this working)\b"
)
# Longer than this, an utterance says more than any of the three.
_MAX_WORDS = 10


def closing_reply(business_name: str) -> str:
    return f"You're welcome. Thank you for calling {business_name}. Goodbye."


def reply(text: str, business_name: str) -> str | None:
    """The reply to `text` when it is one of the three moves above; None otherwise (then the
    answerer goes on as before: "say that again" for a word or two, else the handoff)."""
    words = re.sub(r"[^a-z' ]+", " ", text.lower().replace("’", "'")).split()
    if not words or len(words) > _MAX_WORDS:
        return None
    said = " ".join(words)
    if _PERSON.search(said):
        return None
    asks = "?" in text
    if _HOLD.search(said) and not asks:
        return HOLD_REPLY
    if _CLOSING.search(said) and not asks:
        return closing_reply(business_name)
    if _PRESENCE.search(said) and len(words) <= 6:
        return PRESENCE_REPLY
    return None
