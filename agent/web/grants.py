"""What a caller's token allows: joining its own room as a caller, and nothing more.

LiveKit's default grants let a participant publish any source (camera, screen share) and
data, which a caller never needs: the call page publishes its microphone and listens. Data
publishing stays off, so a caller cannot send the room text or RPCs (the agent's typed-text
input is off too unless the account turns it on: `Account.typed_text`), and a caller cannot
change its own name, metadata or attributes (the account it called is fixed by the token).
"""

from __future__ import annotations

from livekit import api

CALLER_SOURCES = ["microphone"]


def caller_grants(room: str, *, data: bool = False) -> api.VideoGrants:
    """`data`: the account takes typed text (`lk.chat`), which a caller sends as data."""
    return api.VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_publish_sources=list(CALLER_SOURCES),
        can_subscribe=True,
        can_publish_data=data,
        can_update_own_metadata=False,
    )
