"""A minimal SIP user agent over UDP with G.711 RTP: the phone (or trunk) of a test call.

It dials LiveKit's SIP bridge like a carrier's trunk would (INVITE with an SDP offer of PCMU
and PCMA, ACK, BYE), sends the caller's voice as 20 ms G.711 packets on a fixed clock (silence
between questions, as a real phone line never stops), and stamps every RTP packet it receives
with `time.perf_counter()`, the clock the other callers and the worker's timeline use.

It also plays the trunk's part in a transfer: when the bridge sends REFER (LiveKit's
`TransferSIPParticipant`), it accepts (202), dials the Refer-To target, reports progress and
the outcome with NOTIFY (message/sipfrag, RFC 3515), and on success carries the caller's audio
to the new party, as a carrier does for a blind transfer.

Why by hand and not baresip or sipp driven from here: the measurements need the arrival time of
each received packet and questions started the moment the agent falls silent; baresip records to
a file without packet times and plays a file from the start of the call, sipp cannot record.
The person's phone in the transfer test is a real baresip (tests/sip_support.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import struct
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.engines.audio import resample
from caller.recorder import Recorder

logger = logging.getLogger("firstword.caller.sip")

PHONE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
# A network round trip between a carrier's 202 Accepted and its first NOTIFY (see _carry_out_refer).
_NOTIFY_AFTER_202_S = 0.05
PCMU, PCMA, TELEPHONE_EVENT = 0, 8, 101
T1 = 0.5  # RFC 3261's retransmission interval for UDP

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "r": "refer-to",
    "o": "event",
}


# --- G.711 (ITU-T G.711, the sign/exponent/mantissa form, as every phone codes it) ----------


def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign, -magnitude, magnitude).astype(np.float32) / 32768.0


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    return np.where(sign, magnitude, -magnitude).astype(np.float32) / 32768.0


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()


def ulaw_encode(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to G.711 μ-law bytes."""
    pcm = np.clip(samples * 32768.0, -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


# --- SIP messages ----------------------------------------------------------------------------


@dataclass
class SipMessage:
    start: str
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0")

    @property
    def status(self) -> int:
        return int(self.start.split()[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        if self.is_response:
            return self.header("cseq").split()[-1]
        return self.start.split()[0]

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @staticmethod
    def parse(data: bytes) -> SipMessage:
        text = data.decode("utf-8", errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded header line
                key, value = headers[-1]
                headers[-1] = (key, value + " " + line.strip())
                continue
            key, _, value = line.partition(":")
            name = key.strip().lower()
            headers.append((_COMPACT.get(name, name), value.strip()))
        return SipMessage(lines[0], headers, body)


def _render(start: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}", "", ""]
    return ("\r\n".join(lines) + body).encode()


def _tag(value: str) -> str:
    match = re.search(r";\s*tag=([^;>\s]+)", value)
    return match.group(1) if match else ""


def _uri(value: str) -> str:
    match = re.search(r"<([^>]+)>", value)
    return match.group(1) if match else value.split(";")[0].strip()


def _host_port(uri: str) -> tuple[str, int]:
    match = re.match(r"sips?:(?:[^@]*@)?([^:;>]+)(?::(\d+))?", uri)
    if not match:
        raise ValueError(f"not a SIP URI: {uri!r}")
    return match.group(1), int(match.group(2) or 5060)


def _sdp_media(body: str) -> tuple[tuple[str, int] | None, list[int]]:
    host = ""
    port = 0
    payloads: list[int] = []
    for line in body.splitlines():
        if line.startswith("c=IN IP4 "):
            host = line.split()[-1]
        elif line.startswith("m=audio "):
            parts = line.split()
            port = int(parts[1])
            payloads = [int(p) for p in parts[3:] if p.isdigit()]
    return ((host, port) if host and port else None), payloads


# --- dialogs and the agent -------------------------------------------------------------------


@dataclass
class Dialog:
    call_id: str
    local_uri: str
    local_tag: str
    remote_uri: str
    remote_tag: str = ""
    remote_target: str = ""  # the peer's Contact: where in-dialog requests go
    cseq: int = 1
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""


@dataclass
class DialResult:
    status: int  # the INVITE's final status (200 when answered)
    reason: str
    invite_at: float  # perf_counter when the INVITE left
    answered_at: float | None  # perf_counter when the 200 OK arrived
    dialog: Dialog | None


@dataclass
class TransferRecord:
    """What the trunk did with one REFER."""

    refer_to: str
    referred_at: float
    status: int = 0  # the target's final answer to our INVITE
    finished_at: float | None = None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_packet(data, addr)


class SipPhone:
    """One phone line: a SIP socket, an RTP socket, a microphone clock and a recorder."""

    def __init__(self, *, host: str = "127.0.0.1", user: str = "+15035550123") -> None:
        self.host = host
        self.user = user
        self.recorder = Recorder()
        self.transfers: list[TransferRecord] = []
        # Calls that came to this phone (the user part of each INVITE's request URI), and set
        # when one was answered: the phone answers any call while it has none.
        self.called: list[str] = []
        self.answered = asyncio.Event()
        self.dtmf_received = 0
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self.sip_port = 0
        self.rtp_port = 0
        self._dialogs: dict[str, Dialog] = {}
        self._waiters: dict[tuple[str, str, int], asyncio.Queue[SipMessage]] = {}
        self._peer: tuple[str, int] | None = None  # where SIP requests of the dialog go
        self.dialog: Dialog | None = None  # the call the caller is on now
        self._rtp_to: tuple[str, int] | None = None
        self._rtp_from: set[tuple[str, int]] = set()
        self._pending: list[np.ndarray] = []
        # Key presses waiting to go out: (event code, RFC 4733 packets of 4 bytes each).
        self._keys: list[tuple[int, list[bytes]]] = []
        self._keys_sent = asyncio.Event()
        self._telephone_events = False  # the far end's answer accepted telephone-event
        self._spoken = asyncio.Event()
        self.last_speech_end = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)

    # lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sip_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_sip), local_addr=(self.host, 0), family=socket.AF_INET
        )
        rtp_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_rtp), local_addr=(self.host, 0), family=socket.AF_INET
        )
        self._sip, self._rtp = sip_transport, rtp_transport
        self.sip_port = sip_transport.get_extra_info("sockname")[1]
        self.rtp_port = rtp_transport.get_extra_info("sockname")[1]
        self._spawn(self._send_audio(), "sip-mic")

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sip is not None:
            self._sip.close()
        if self._rtp is not None:
            self._rtp.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # SIP transport

    @property
    def _contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.sip_port}>"

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.sip_port};branch={branch};rport"

    def _send(self, message: bytes, addr: tuple[str, int]) -> None:
        assert self._sip is not None
        self._sip.sendto(message, addr)

    def _sdp(self) -> str:
        session = random.getrandbits(31)
        return (
            "v=0\r\n"
            f"o=firstword {session} {session} IN IP4 {self.host}\r\n"
            "s=firstword caller\r\n"
            f"c=IN IP4 {self.host}\r\n"
            "t=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP {PCMU} {PCMA} {TELEPHONE_EVENT}\r\n"
            f"a=rtpmap:{PCMU} PCMU/8000\r\n"
            f"a=rtpmap:{PCMA} PCMA/8000\r\n"
            f"a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000\r\n"
            f"a=fmtp:{TELEPHONE_EVENT} 0-16\r\n"
            "a=ptime:20\r\n"
            "a=sendrecv\r\n"
        )

    def _request(
        self, dialog: Dialog, method: str, *, extra: list[tuple[str, str]] | None = None, body=""
    ) -> tuple[bytes, str]:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        if method not in ("ACK",):
            dialog.cseq += 1
        cseq = dialog.cseq
        to = f"<{dialog.remote_uri}>" + (f";tag={dialog.remote_tag}" if dialog.remote_tag else "")
        headers = [
            ("Via", self._via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}"),
            ("To", to),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", self._contact),
            ("User-Agent", "firstword-sip-caller"),
            *(extra or []),
        ]
        target = dialog.remote_target or dialog.remote_uri
        return _render(f"{method} {target} SIP/2.0", headers, body), branch

    async def _transaction(
        self, dialog: Dialog, method: str, addr: tuple[str, int], *, timeout_s: float, **kw: object
    ) -> SipMessage | None:
        """Send a non-INVITE request and wait for its final response (UDP retransmits)."""
        message, _ = self._request(dialog, method, **kw)  # type: ignore[arg-type]
        key = (dialog.call_id, method, dialog.cseq)
        queue: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._waiters[key] = queue
        deadline = time.perf_counter() + timeout_s
        interval = T1
        try:
            while time.perf_counter() < deadline:
                self._send(message, addr)
                try:
                    reply = await asyncio.wait_for(
                        queue.get(), min(interval, deadline - time.perf_counter())
                    )
                except TimeoutError:
                    interval = min(interval * 2, 4.0)
                    continue
                if reply.status >= 200:
                    return reply
                interval = 4.0  # provisional: the far end has it; only wait
            return None
        finally:
            self._waiters.pop(key, None)

    # calls

    async def dial(
        self, target: str, addr: tuple[str, int], *, within_s: float = 30.0
    ) -> DialResult:
        """INVITE `target` (a SIP URI) at `addr`; returns once answered or refused."""
        dialog = Dialog(
            call_id=uuid.uuid4().hex,
            local_uri=f"sip:{self.user}@{self.host}",
            local_tag=uuid.uuid4().hex[:10],
            remote_uri=target,
        )
        self._dialogs[dialog.call_id] = dialog
        result = await self._invite(dialog, addr, within_s)
        if result.status == 200:
            self.dialog = dialog
            self._peer = addr
        return result

    async def _invite(self, dialog: Dialog, addr: tuple[str, int], within_s: float) -> DialResult:
        message, _ = self._request(
            dialog,
            "INVITE",
            extra=[
                ("Content-Type", "application/sdp"),
                ("Allow", "INVITE,ACK,BYE,CANCEL,REFER,NOTIFY,OPTIONS"),
            ],
            body=self._sdp(),
        )
        key = (dialog.call_id, "INVITE", dialog.cseq)
        queue: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._waiters[key] = queue
        invite_at = time.perf_counter()
        self._send(message, addr)
        deadline = invite_at + within_s
        interval, provisional = T1, False
        try:
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return DialResult(408, "no final answer", invite_at, None, None)
                try:
                    reply = await asyncio.wait_for(
                        queue.get(), left if provisional else min(interval, left)
                    )
                except TimeoutError:
                    if not provisional:
                        self._send(message, addr)
                        interval = min(interval * 2, 4.0)
                    continue
                if reply.status < 200:
                    provisional = True
                    continue
                answered_at = time.perf_counter()
                dialog.remote_tag = _tag(reply.header("to"))
                reason = reply.start.split(" ", 2)[2] if reply.start.count(" ") >= 2 else ""
                if reply.status >= 300:
                    self._ack(dialog, reply, addr)
                    return DialResult(reply.status, reason, invite_at, None, None)
                dialog.remote_target = _uri(reply.header("contact")) or dialog.remote_uri
                media, payloads = _sdp_media(reply.body)
                self._ack(dialog, reply, addr)
                if media is None or not {PCMU, PCMA} & set(payloads):
                    return DialResult(488, "no G.711 in the answer", invite_at, None, None)
                self._payload = PCMU if PCMU in payloads else PCMA
                self._telephone_events = TELEPHONE_EVENT in payloads
                self._rtp_to = media
                return DialResult(200, reason, invite_at, answered_at, dialog)
        finally:
            self._waiters.pop(key, None)

    def _ack(self, dialog: Dialog, reply: SipMessage, addr: tuple[str, int]) -> None:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        to = reply.header("to")
        headers = [
            ("Via", self._via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}"),
            ("To", to),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{dialog.cseq} ACK"),
        ]
        target = dialog.remote_target or dialog.remote_uri
        self._send(_render(f"ACK {target} SIP/2.0", headers), addr)

    async def hang_up(self, *, timeout_s: float = 3.0) -> None:
        """BYE the current call (the caller puts the phone down)."""
        dialog, peer = self.dialog, self._peer
        if dialog is None or peer is None or dialog.ended.is_set():
            return
        dialog.ended.set()
        dialog.end_reason = "hung up"
        self._rtp_to = None
        await self._transaction(dialog, "BYE", peer, timeout_s=timeout_s)

    # audio

    async def say(self, samples: np.ndarray, sample_rate: int) -> float:
        """Speak `samples` into the call in real time; returns when the speech ended (at once
        when no call is up)."""
        if self._rtp_to is None:
            return time.perf_counter()
        audio = resample(samples, sample_rate, PHONE_RATE)
        pad = (-audio.size) % FRAME_SAMPLES
        audio = np.concatenate([audio, np.zeros(pad, dtype=np.float32)])
        self._spoken.clear()
        self._pending.extend(
            audio[i : i + FRAME_SAMPLES] for i in range(0, audio.size, FRAME_SAMPLES)
        )
        await self._spoken.wait()
        return self.last_speech_end

    async def press(self, key: str, *, duration_s: float = 0.16) -> None:
        """Press a phone key: RFC 4733 telephone-events (PT 101) in place of the audio for
        `duration_s`, then the three end packets, as a phone sends them. Returns once sent."""
        if self._rtp_to is None or not self._telephone_events:
            raise RuntimeError("no call up whose answer accepted telephone-event")
        code = "0123456789*#".index(key)
        steps = max(1, round(duration_s * PHONE_RATE / FRAME_SAMPLES))
        volume = 10  # -10 dBm0
        packets = [
            struct.pack("!BBH", code, volume, step * FRAME_SAMPLES) for step in range(1, steps + 1)
        ]
        packets += [struct.pack("!BBH", code, 0x80 | volume, steps * FRAME_SAMPLES)] * 3
        self._keys_sent.clear()
        self._keys.append((code, packets))
        await self._keys_sent.wait()

    def _send_key(self, packets: list[bytes]) -> bool:
        """One packet of the key under way (its first carries the marker; every packet the
        event's start timestamp); True once its last went out and the timestamp moved on."""
        assert self._rtp is not None and self._rtp_to is not None
        first = len(packets) == self._key_packets
        payload = packets.pop(0)
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if first else 0) | TELEPHONE_EVENT,
            self._seq,
            self._ts,
            self._ssrc,
        )
        self._rtp.sendto(header + payload, self._rtp_to)
        self._seq = (self._seq + 1) & 0xFFFF
        if packets:
            return False
        duration = struct.unpack("!H", payload[2:4])[0]
        self._ts = (self._ts + duration) & 0xFFFFFFFF
        return True

    _key_packets = 0

    async def _send_audio(self) -> None:
        silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        next_at = time.perf_counter()
        marker = True
        while True:
            if self._keys and self._rtp_to is not None and self._rtp is not None:
                _code, packets = self._keys[0]
                if self._key_packets == 0:
                    self._key_packets = len(packets)
                if self._send_key(packets):
                    self._keys.pop(0)
                    self._key_packets = 0
                    marker = True  # the audio after an event starts a new talkspurt
                    if not self._keys:
                        self._keys_sent.set()
                next_at += FRAME_SAMPLES / PHONE_RATE
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                continue
            speaking = bool(self._pending) and self._rtp_to is not None
            chunk = self._pending.pop(0) if speaking else silence
            if self._rtp_to is not None and self._rtp is not None:
                payload = ulaw_encode(chunk) if self._payload == PCMU else _alaw_encode(chunk)
                header = struct.pack(
                    "!BBHII",
                    0x80,
                    (0x80 if marker else 0) | self._payload,
                    self._seq,
                    self._ts,
                    self._ssrc,
                )
                marker = False
                self._rtp.sendto(header + payload, self._rtp_to)
                self._seq = (self._seq + 1) & 0xFFFF
                self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
            if speaking and not self._pending:
                self.last_speech_end = time.perf_counter()
                self._spoken.set()
            next_at += FRAME_SAMPLES / PHONE_RATE
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    _payload = PCMU

    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        payload_type = data[1] & 0x7F
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= offset + 4:  # header extension
            offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
        payload = np.frombuffer(data[offset:], dtype=np.uint8)
        if payload_type == TELEPHONE_EVENT:
            self.dtmf_received += 1
            return
        if payload_type == PCMU:
            samples = ULAW_DECODE[payload]
        elif payload_type == PCMA:
            samples = ALAW_DECODE[payload]
        else:
            return  # comfort noise and anything else: not speech
        self.recorder.add(samples)

    # requests from the far end

    def _on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = SipMessage.parse(data)
        except (ValueError, IndexError):
            logger.warning("unparseable SIP packet from %s", addr)
            return
        call_id = message.header("call-id")
        if message.is_response:
            try:
                seq = int(message.header("cseq").split()[0])
            except (ValueError, IndexError):
                return
            queue = self._waiters.get((call_id, message.method, seq))
            if queue is not None:
                queue.put_nowait(message)
            return
        dialog = self._dialogs.get(call_id)
        method = message.method
        if method == "ACK":
            return
        if method == "INVITE":
            self._answer(message, addr, dialog)
            return
        if dialog is None and method != "OPTIONS":
            self._reply(message, addr, 481, "Call/Transaction Does Not Exist")
            return
        if method == "BYE":
            assert dialog is not None
            self._reply(message, addr, 200, "OK")
            if not dialog.ended.is_set():
                dialog.end_reason = "far end hung up"
                dialog.ended.set()
                if dialog is self.dialog:
                    self._rtp_to = None
        elif method == "REFER":
            assert dialog is not None
            self._reply(message, addr, 202, "Accepted")
            refer_cseq = int(message.header("cseq").split()[0])
            self._spawn(
                self._carry_out_refer(dialog, addr, _uri(message.header("refer-to")), refer_cseq),
                "sip-refer",
            )
        else:  # OPTIONS, INFO, NOTIFY...: acknowledged, nothing to do
            self._reply(message, addr, 200, "OK")

    def _answer(self, invite: SipMessage, addr: tuple[str, int], dialog: Dialog | None) -> None:
        """A call to this phone: ringing, then answered at once with G.711 (a retransmitted
        INVITE gets the same answer again). Busy while on another call."""
        if dialog is None and self.dialog is not None and not self.dialog.ended.is_set():
            self._reply(invite, addr, 486, "Busy Here")
            return
        media, payloads = _sdp_media(invite.body)
        if media is None or not {PCMU, PCMA} & set(payloads):
            self._reply(invite, addr, 488, "Not Acceptable Here")
            return
        if dialog is None:
            dialog = Dialog(
                call_id=invite.header("call-id"),
                local_uri=_uri(invite.header("to")),
                local_tag=uuid.uuid4().hex[:10],
                remote_uri=_uri(invite.header("from")),
                remote_tag=_tag(invite.header("from")),
                remote_target=_uri(invite.header("contact")) or _uri(invite.header("from")),
            )
            self._dialogs[dialog.call_id] = dialog
            self.called.append(invite.start.split(" ")[1].split("@")[0].removeprefix("sip:"))
            self._reply(invite, addr, 180, "Ringing", tag=dialog.local_tag)
        self._payload = PCMU if PCMU in payloads else PCMA
        self._telephone_events = TELEPHONE_EVENT in payloads
        self._rtp_to = media
        self.dialog, self._peer = dialog, addr
        self._reply(invite, addr, 200, "OK", tag=dialog.local_tag, body=self._sdp())
        self.answered.set()

    def _reply(
        self,
        request: SipMessage,
        addr: tuple[str, int],
        status: int,
        reason: str,
        *,
        tag: str = "",
        body: str = "",
    ) -> None:
        to = request.header("to")
        if not _tag(to):
            to += f";tag={tag or uuid.uuid4().hex[:10]}"
        headers = [("Via", via) for via in request.all("via")] + [
            ("From", request.header("from")),
            ("To", to),
            ("Call-ID", request.header("call-id")),
            ("CSeq", request.header("cseq")),
            ("Contact", self._contact),
        ]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self._send(_render(f"SIP/2.0 {status} {reason}", headers, body), addr)

    async def _carry_out_refer(
        self, dialog: Dialog, addr: tuple[str, int], refer_to: str, refer_cseq: int
    ) -> None:
        """Blind transfer, as the trunk: dial the target, tell the referrer how it went."""
        record = TransferRecord(refer_to, time.perf_counter())
        self.transfers.append(record)

        async def notify(fragment: str, state: str) -> None:
            await self._transaction(
                dialog,
                "NOTIFY",
                addr,
                timeout_s=4.0,
                extra=[
                    ("Event", f"refer;id={refer_cseq}"),
                    ("Subscription-State", state),
                    ("Content-Type", "message/sipfrag;version=2.0"),
                ],
                body=fragment + "\r\n",
            )

        # A carrier's first NOTIFY comes a network round trip after its 202. Sent at once on
        # loopback, it sometimes reached livekit-sip before the 202 was matched to its REFER,
        # and the bridge reported the transfer as failed ("transaction failed to complete (0
        # intermediate responses)", no SIP status) whatever the carrier then did: CI saw both
        # a completed and a busy transfer reported that way.
        await asyncio.sleep(_NOTIFY_AFTER_202_S)
        await notify("SIP/2.0 100 Trying", "active;expires=60")
        try:
            target_addr = _host_port(refer_to)
        except ValueError:
            record.status, record.finished_at = 404, time.perf_counter()
            await notify("SIP/2.0 404 Not Found", "terminated;reason=noresource")
            return
        new = Dialog(
            call_id=uuid.uuid4().hex,
            local_uri=f"sip:{self.user}@{self.host}",
            local_tag=uuid.uuid4().hex[:10],
            remote_uri=refer_to,
        )
        self._dialogs[new.call_id] = new
        saved_rtp = self._rtp_to
        result = await self._invite(new, target_addr, 30.0)
        record.status, record.finished_at = result.status, time.perf_counter()
        if result.status != 200:
            self._rtp_to = saved_rtp  # still talking to the agent
            await notify(f"SIP/2.0 {result.status} {result.reason}", "terminated;reason=noresource")
            return
        # The caller now talks to the person (the RTP target was switched by the answer).
        self.dialog, self._peer = new, target_addr
        await notify("SIP/2.0 200 OK", "terminated;reason=noresource")
        if not dialog.ended.is_set():
            dialog.ended.set()
            dialog.end_reason = "transferred"
            await self._transaction(dialog, "BYE", addr, timeout_s=3.0)


def _alaw_encode(samples: np.ndarray) -> bytes:
    """Float samples to G.711 A-law (only used when the far end refuses μ-law)."""
    pcm = np.clip(samples * 32768.0, -32768, 32767).astype(np.int32) >> 3
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1), 0xFFF)
    exponent = np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4, 0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return (((sign | (exponent << 4) | mantissa) ^ 0x55) & 0xFF).astype(np.uint8).tobytes()
