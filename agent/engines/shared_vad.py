"""One VAD stream per call, heard by every part of the call that needs one.

A call has two listeners for voice activity: the session (turn-taking, interruptions) and
the speculative recogniser (`engines/speculative_stt.py`, which transcribes at the first
pause). Each used to open its own Silero stream on the same caller audio: two ONNX runs per
32 ms window, two resamplers, two 20 s speech buffers (1.97 MB each), for the same answer.
Under load the VAD was the largest single share of the worker's CPU (issue 24's profile).

`SharedVAD` wraps a call's `silero.VAD`: every `stream()` it gives is a `vad.VADStream` of its
own (the framework and the recogniser keep using the public stream API), all fed by one
real stream. The first of them to push audio is the feeder: its frames (and flushes) go to
the real stream; the others' frames are the same audio (the framework pushes each frame to
its STT and its VAD alike) and are dropped. When the feeder closes, the next stream to push
takes over. Every event of the real stream is given to every open stream.

Written by hand: livekit-agents has no way to share one VAD stream between a session and
its STT (`StreamAdapter` and our recogniser each call `vad.stream()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from livekit import rtc
from livekit.agents import vad

logger = logging.getLogger("firstword.vad")


class SharedVAD(vad.VAD):
    """A call's VAD whose streams share one stream of the wrapped VAD."""

    def __init__(self, wrapped: vad.VAD) -> None:
        super().__init__(capabilities=wrapped.capabilities)
        self._wrapped = wrapped
        self._real: vad.VADStream | None = None
        self._pump: asyncio.Task[None] | None = None
        self._streams: list[_SharedStream] = []
        self._feeder: _SharedStream | None = None
        # Streams the real one was opened for: tests and logs read it (1 per call).
        self.real_streams_opened = 0

    @property
    def model(self) -> str:
        return self._wrapped.model

    @property
    def provider(self) -> str:
        return self._wrapped.provider

    def stream(self) -> vad.VADStream:
        shared = _SharedStream(self)
        self._streams.append(shared)
        return shared

    # -- used by the streams --------------------------------------------------------------

    def _real_stream(self) -> vad.VADStream:
        if self._real is None:
            self._real = self._wrapped.stream()
            self.real_streams_opened += 1
            self._pump = asyncio.create_task(self._broadcast(self._real), name="shared-vad")
        return self._real

    def _push(self, source: _SharedStream, item: rtc.AudioFrame | None) -> None:
        """A frame (None: a flush) from `source`; used when it is the feeder."""
        if self._feeder is None or self._feeder.closed:
            self._feeder = source
        if source is not self._feeder:
            return
        real = self._real_stream()
        if item is None:
            real.flush()
        else:
            real.push_frame(item)

    async def _broadcast(self, real: vad.VADStream) -> None:
        try:
            async for event in real:
                for stream in list(self._streams):
                    stream.deliver(event)
        finally:
            for stream in list(self._streams):
                stream.deliver(None)

    async def _left(self, stream: _SharedStream) -> None:
        """A stream closed: with none left, the real stream closes too."""
        if stream in self._streams:
            self._streams.remove(stream)
        if self._feeder is stream:
            self._feeder = None
        if not self._streams:
            await self.aclose()

    async def aclose(self) -> None:
        real, pump = self._real, self._pump
        self._real, self._pump = None, None
        if real is not None:
            await real.aclose()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


class _SharedStream(vad.VADStream):
    """One listener's stream: pushes go to the shared feeder, events come from it."""

    def __init__(self, owner: SharedVAD) -> None:
        self._owner = owner
        self._events: asyncio.Queue[vad.VADEvent | None] = asyncio.Queue()
        self.closed = False
        super().__init__(owner)

    def deliver(self, event: vad.VADEvent | None) -> None:
        self._events.put_nowait(event)

    async def _main_task(self) -> None:
        forward = asyncio.create_task(self._forward_input(), name="shared-vad-input")
        try:
            while (event := await self._events.get()) is not None:
                self._event_ch.send_nowait(event)
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward

    async def _forward_input(self) -> None:
        async for item in self._input_ch:
            self._owner._push(self, None if isinstance(item, self._FlushSentinel) else item)
        # This listener's input ended (`end_input`): another may feed from now on.
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()
        await self._owner._left(self)
