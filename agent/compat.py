"""Every reach into a framework's private attributes, in one place, each behind one function.

livekit-agents and its plugins offer no public way to do these few things; each function says
what it needs and why. `tests/test_compat.py` checks every attribute used here on the pinned
versions and names it when an upgrade removes or renames it, so a framework change fails
there, loudly, instead of deep inside a call. Keep each reach in its own function (or class)
with its own test, so adding one does not touch the others. (The health server's reaches
are checked in `tests/test_observability.py`.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aiohttp import web
from google.cloud import texttospeech
from livekit import rtc
from livekit.agents import AgentServer, AgentSession, JobContext, room_io
from livekit.agents.voice import io
from livekit.agents.voice.endpointing import BaseEndpointing
from livekit.agents.voice.room_io._output import _ParticipantAudioOutput
from livekit.agents.worker import ServerEnvOption
from livekit.plugins import google, silero
from livekit.plugins.silero import onnx_model as silero_onnx
from livekit.protocol import agent as agent_proto

# --- livekit-rtc ----------------------------------------------------------------------------


def start_rtc_ffi() -> object:
    """Create livekit-rtc's process-wide FFI client now, on one thread, and return it.

    `FfiClient.instance` creates the client lazily and without a lock. With the thread
    executor, the first calls of a fresh worker connect their rooms from several job threads
    at once: each can build its own client, and the last one built replaces the others
    together with its event queue. A thread that subscribed to a replaced queue never hears
    its `ConnectCallback`, so `ctx.connect()` never returns, and 15 s later the FFI panics
    ("timed out waiting for ReadyForRoomEventRequest") and SIGTERMs the worker with every
    call on it. Building it in prewarm, before any job, leaves nothing to race. There is no
    public way to start the FFI; `livekit.rtc._ffi_client.FfiClient` is its only handle.
    """
    from livekit.rtc._ffi_client import FfiClient

    return FfiClient.instance


def route_ffi_events() -> None:
    """Deliver each call's audio events to that call's loop only (once per process).

    livekit-rtc's FFI thread hands every event to every subscriber whose filter admits it,
    each with `loop.call_soon_threadsafe` (a self-pipe write and a wake-up of that loop).
    Two filters are wider than they need be, and with the thread executor every call's
    room and streams subscribe to the one process-wide queue, so the cost grows with the
    square of the calls:

    - an `AudioStream` (the caller's audio, 100 frames a second) admits every
      `audio_stream_event` of the process and drops the other streams' frames in its own
      loop (`AudioStream._is_event`): with N calls, each caller frame wakes N loops;
    - a `Room` admits everything but stream events, so the callback of every frame that
      any call's agent speaks (`capture_audio_frame`, awaited by `AudioSource.capture_frame`
      on a subscription of its own) wakes every room's loop, which passes it on to its
      participants' queue and waits for it to be consumed.

    The load bench's profile at four calls put these wake-ups (`FfiQueue.put`,
    `_write_to_self`) at ~17 % of the worker's busy samples, next to the VAD's 21 %. Here each
    stream's subscription is narrowed to its own handle once it has one, and each room's to
    what a room handles. livekit-rtc has no public way to pass these filters: this swaps
    them in `FfiQueue._subscribers` (under its `_lock`) after `AudioStream.__init__` and
    `Room.connect`; events that arrived before are dropped by the original code as before.
    (`AudioSource.capture_frame`'s own unfiltered subscription is left as shipped: narrowing
    it too measured no gain, docs/capacity.md.)
    """
    if getattr(rtc.AudioStream, "_firstword_routed", False):
        return
    stream_init = rtc.AudioStream.__init__
    room_connect = rtc.Room.connect

    def init(self: rtc.AudioStream, *args: Any, **kwargs: Any) -> None:
        stream_init(self, *args, **kwargs)
        handle = self._ffi_handle.handle
        _narrow_subscription(
            self._ffi_queue, lambda e: e.audio_stream_event.stream_handle == handle
        )

    async def connect(self: rtc.Room, *args: Any, **kwargs: Any) -> None:
        await room_connect(self, *args, **kwargs)
        _narrow_subscription(
            self._ffi_queue, lambda e: e.WhichOneof("message") not in _NOT_FOR_ROOMS
        )

    rtc.AudioStream.__init__ = init  # type: ignore[method-assign]
    rtc.Room.connect = connect  # type: ignore[method-assign]
    rtc.AudioStream._firstword_routed = True  # type: ignore[attr-defined]


# Handled by subscriptions of their own (AudioStream, VideoStream, AudioSource.capture_frame).
_NOT_FOR_ROOMS = frozenset({"audio_stream_event", "video_stream_event", "capture_audio_frame"})


def _narrow_subscription(queue: object, admit: Callable[[Any], bool]) -> None:
    from livekit.rtc._ffi_client import FfiClient

    ffi_queue = FfiClient.instance.queue
    with ffi_queue._lock:
        for i, (subscribed, loop, _filter) in enumerate(ffi_queue._subscribers):
            if subscribed is queue:
                ffi_queue._subscribers[i] = (subscribed, loop, admit)
                return


# --- livekit-plugins-silero ---------------------------------------------------------------


class InlineVadExecutor(concurrent.futures.ThreadPoolExecutor):
    """A call loop's default executor that runs Silero's window inference in place.

    The Silero plugin's stream hands every 32 ms window to the loop's default executor
    (`loop.run_in_executor(None, self._model, window)`): a thread hop to run ~0.2 ms of
    ONNX (which releases the GIL anyway), then a wake-up of the loop through its self-pipe
    to hear the result. Per call that is ~31 hops a second; under load the hops cost the
    worker more than the inference (issue 24's profile: thread hand-off, `_write_to_self`
    and future callbacks ~25 % of its CPU). This executor runs calls to the plugin's
    `OnnxModel` at once, on the loop's thread, and gives everything else (`asyncio.to_thread`:
    Whisper, the FAQ match, synthesis) to `pool`, one pool for all the calls of the process
    (the framework's per-loop default pools made up to 6 threads per call).

    What it relies on: the plugin calls an `OnnxModel` through the *default* executor (no
    private attribute is read; `tests/test_compat.py` checks that this still happens).
    `shutdown` leaves the shared pool running: a call's loop shuts its default executor
    down when it ends, and the other calls still use the pool.
    """

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        # A ThreadPoolExecutor only because `loop.set_default_executor` takes no other kind;
        # its own threads are never started (every submit goes inline or to `pool`).
        super().__init__(max_workers=1, thread_name_prefix="firstword-unused")
        self._pool = pool
        self.inline_runs = 0

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        if isinstance(fn, silero_onnx.OnnxModel):
            self.inline_runs += 1
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as error:
                done.set_exception(error)
            return done
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # the pool is the process's, not this call's


def silero_vad_sharing_model(vad: silero.VAD) -> silero.VAD:
    """A new `silero.VAD` over `vad`'s loaded ONNX session, with its own copy of the options.

    Each call needs its own VAD object (a session subscribes to its providers' events), but
    loading the model again per call costs ~0.1 s and memory. The constructor takes a session
    and options (public signature), but the loaded ones are only reachable as `_onnx_session`
    and `_opts`. The options are copied so that one call's `update_options` stays its own.
    """
    return silero.VAD(session=vad._onnx_session, opts=replace(vad._opts))


# --- livekit-agents: the session's endpointing ------------------------------------------


def install_endpointing(session: AgentSession[Any], endpointing: BaseEndpointing) -> bool:
    """Use `endpointing` for the session's turn decisions; False when it has none yet.

    The framework builds its endpointing object from options (`create_endpointing`: fixed or
    dynamic delays) when the agent's activity starts, and takes no object of our own. The
    running activity is `AgentSession._activity`, its turn decisions are made by
    `AgentActivity._audio_recognition`, whose `_update_options(endpointing=...)` is how the
    framework itself swaps the object when options change.
    """
    activity = getattr(session, "_activity", None)
    recognition = getattr(activity, "_audio_recognition", None)
    if recognition is None:
        return False
    recognition._update_options(endpointing=endpointing)
    return True


# --- livekit-agents: JobContext -----------------------------------------------------------


@dataclass(frozen=True)
class DispatchTimes:
    """When the worker received the job request and the server assigned it (unix s; 0: unknown)."""

    received_at: float
    assigned_at: float


def job_dispatch_times(ctx: JobContext) -> DispatchTimes:
    """The worker's dispatch stamps of this job (0.0 where unknown: console, simulation).

    The worker stamps them on the job's `RunningJobInfo`, which `JobContext` keeps as `_info`
    (livekit-agents itself reads them from there for its job span); no public accessor.
    """
    info = ctx._info
    return DispatchTimes(
        received_at=float(info.received_at or 0.0), assigned_at=float(info.assigned_at or 0.0)
    )


# --- livekit-agents: RoomIO's audio output, published before a caller is linked ---------


class EarlyRoomAudioOutput:
    """RoomIO's own audio output (`_ParticipantAudioOutput`), published when we say so.

    RoomIO creates this output in `start()` but publishes its track only once a caller is
    linked (`RoomIO._init_task` waits for the participant first), so every call paid the
    publication after its caller arrived, and a SIP bridge that answers only once the agent
    publishes audio waited for it too. Built here, published at once (`publish`), and handed
    to the session as `session.output.audio` (RoomIO then makes no audio output of its own,
    `RoomOptions(audio_output=False)`), it is the same output as before: the same track name,
    pacing, pause/interruption and playout reporting, and it sends its first frame the
    moment a participant subscribes. The class is private: no public constructor exists.
    """

    def __init__(self, room: rtc.Room, options: room_io.AudioOutputOptions | None = None):
        opts = options or room_io.AudioOutputOptions()
        self._output = _ParticipantAudioOutput(
            room,
            sample_rate=opts.sample_rate,
            num_channels=opts.num_channels,
            track_publish_options=opts.track_publish_options,
            track_name=opts.track_name if isinstance(opts.track_name, str) else TRACK_NAME,
        )

    @property
    def output(self) -> io.AudioOutput:
        return self._output

    @property
    def subscribed(self) -> asyncio.Future[None]:
        """Done once a participant has subscribed to the track: frames flow from then on."""
        return self._output.subscribed

    async def publish(self) -> None:
        """Publish the track; returns once a participant has subscribed to it."""
        await self._output.start()

    async def aclose(self) -> None:
        await self._output.aclose()


# The name RoomIO gives the agent's track (clients and tests see the same name as before).
TRACK_NAME = "roomio_audio"


# --- livekit-plugins-google: where the gRPC clients come from -----------------------------


class GoogleSTTWithClient(google.STT):
    """`google.STT` whose gRPC client comes from `client_factory` (when given).

    The plugin builds its client in `_create_client` (the connect callback of its connection
    pool, `_pool`) from a location, not an endpoint; an endpoint override (a regional host,
    a proxy, the loopback stand-ins) needs the client built by us. `prewarm` opens a pooled
    connection ahead of the first utterance (the plugin's own `prewarm` is the base no-op).
    """

    def __init__(
        self, *, client_factory: Callable[[], Awaitable[Any]] | None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._firstword_client_factory = client_factory

    async def _create_client(self, timeout: float) -> Any:  # noqa: ASYNC109 (plugin API)
        if self._firstword_client_factory is None:
            return await super()._create_client(timeout)
        return await self._firstword_client_factory()

    def prewarm(self) -> None:
        self._pool.prewarm()


class GoogleTTSWithClient(google.TTS):
    """`google.TTS` whose gRPC client comes from `client_factory` (when given).

    The plugin builds its client lazily in `_ensure_client`, for a location's host only; we
    build it for an overridden endpoint and store it where the plugin looks (`_client`).
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], texttospeech.TextToSpeechAsyncClient] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._firstword_client_factory = client_factory

    def _ensure_client(self) -> texttospeech.TextToSpeechAsyncClient:
        if self._firstword_client_factory is not None and self._client is None:
            self._client = self._firstword_client_factory()
        return super()._ensure_client()

    def prewarm(self) -> None:
        self._ensure_client()


# --- livekit-plugins-google: the Gemini client's TLS contexts ---------------------------


def share_gemini_tls(context: ssl.SSLContext) -> None:
    """Build every Gemini client of the process with `context` as its TLS context.

    `google.LLM.__init__` builds a `google.genai.Client` with no HTTP options, and each such
    client creates three TLS contexts of its own (httpx, aiohttp, websockets), each loading
    the whole CA bundle: 143 ms of CPU and 2.3 MB per call that builds an LLM, against 1.3 ms
    with one shared context (`python -m benchmarks.gemini_client`). The
    plugin has no parameter for the client or its options, so this wraps the module's
    `Client` name (what `LLM.__init__` calls) to pass client-level `HttpOptions` carrying
    the one context; the options a request passes are still merged over these by the SDK.
    An `SSLContext` is safe to share between threads and event loops.
    """
    from google.genai import Client
    from google.genai import types as genai_types
    from livekit.plugins.google import llm as google_llm

    options = genai_types.HttpOptions(
        client_args={"verify": context},  # httpx / httpx2
        async_client_args={"verify": context, "ssl": context},  # httpx, aiohttp, websockets
    )
    google_llm.Client = functools.partial(Client, http_options=options)  # type: ignore[misc, assignment]


# --- livekit-agents: AgentServer's health server and its connection ----------------------


class AgentServerWithRoutes(AgentServer):
    """An `AgentServer` whose own health server (FIRSTWORD_HTTP_PORT) also serves `routes`.

    The framework builds its aiohttp app (`GET /`, `GET /worker`) inside `run()` and starts it
    before any public hook fires (`worker_started` comes after the router is frozen), so routes
    cannot be added from outside. It keeps that server as `self._http_server`; this class
    adds the routes the moment `run()` assigns it, before it starts. One port for every probe
    instead of a second server of our own.
    """

    def __init__(self, *args: Any, routes: list[web.RouteDef] | None = None, **kwargs: Any):
        self.__routes = list(routes or [])
        super().__init__(*args, **kwargs)

    @property
    def _http_server(self) -> Any:
        return self.__dict__.get("_firstword_http_server")

    @_http_server.setter
    def _http_server(self, value: Any) -> None:
        if value is not None and self.__routes:
            value.app.add_routes(self.__routes)
        self.__dict__["_firstword_http_server"] = value


@dataclass(frozen=True)
class ServerConnection:
    """The worker's connection to the LiveKit server, as its own health check sees it."""

    registered: bool
    connecting: bool
    failed: bool


def server_connection(server: AgentServer) -> ServerConnection:
    """Registered (and not reconnecting), reconnecting, or given up.

    `AgentServer.id` is public but keeps the last id through a reconnect; the framework's
    own `GET /` reads `_connection_failed`, and `_connecting` is set while it (re)connects.
    """
    connecting = bool(server._connecting)
    failed = bool(server._connection_failed)
    registered = server.id != "unregistered" and not connecting and not failed
    return ServerConnection(registered=registered, connecting=connecting, failed=failed)


# --- livekit-agents: AgentServer's accept/full decision (agent/worker/capacity.py) --------
#
# Jobs are accepted by counting calls, not by the framework's per-job load estimate.
#
# The framework decides whether to accept a job from `_get_effective_load()`: the reported load
# plus `_reserved_slots` (jobs it said "available" to but has not launched yet) times an
# estimated per-job load. That estimate is `load / len(active_jobs)`, or `threshold /
# num_idle_processes` when no job runs: with our load curve (agent/worker/capacity.py) and jobs that
# are still being torn down in `active_jobs`, a burst from idle was refused after one or two
# reservations, and the server then dropped the call for its retry interval (the caller waits
# in silence). Here the decision counts calls: live + held + reserved against the worker's
# conversation and hold slots. Checked by tests/test_e2e_capacity.py
# (`test_the_framework_still_has_what_the_capacity_override_uses`).


class CallCounter(Protocol):
    """The worker's calls as the accept/full decision counts them (the worker's capacity,
    agent/worker/capacity.py `CountedCalls`); given to the server rather than imported here,
    so this module holds the framework's side only."""

    def load_now(self) -> float: ...

    def effective_load(self, reserved: int) -> float: ...

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]: ...


class CapacityAwareServer(AgentServer):
    """An AgentServer whose accept/full decision counts live calls and reserved jobs, and
    that tells the server at once when it goes from full to available (or back).

    The framework sends the worker's status every 2.5 s (`UPDATE_STATUS_INTERVAL`) but reads
    the load every 0.5 s. A worker marked full gets no job request, and livekit-server
    v1.13.5 does not retry a room whose request found no available worker ("failed to send
    job request: no servers available"): callers who joined in the seconds between slots
    freeing and the next status were never answered (CI: two callers, 20 s of silence).
    So each load reading that flips full/available sends the status right away, and with
    the thread executor so does each call's claim or release, the moment it happens.

    The status carries a load too, and livekit-server v1.13.5 offers a worker a job only while
    that load is under its target (0.7; `JobRequestAffinity`: `target - load`). The framework
    sends `_worker_load`, the last reading of the load function, which runs in an executor
    thread: a reading taken while every slot was taken (load 1.0) could land after a caller
    had left, and go out with "available". The server then refused every caller until the
    next status, up to 2.5 s later (CI: a fresh worker's third caller of three never heard a
    word; 5 of 218 status updates in a loaded run). So each status update reports the load
    of the calls counted at that moment.
    """

    def __init__(self, *args: Any, calls: CallCounter, **kwargs: Any):
        self._calls = calls
        super().__init__(*args, **kwargs)

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        # With the thread executor the calls count in this process: each claim or release
        # re-decides the status at once (a caller who came in the up-to-0.5 s before the next
        # load reading was refused by the server, then waited for agent/worker/unanswered.py).
        # Job processes count in their own process; there the load reading is the only signal.
        loop = asyncio.get_running_loop()
        self._recheck_wanted = False
        self._recheck: asyncio.Task[None] | None = None

        def changed() -> None:  # on a job's thread
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to tell
                loop.call_soon_threadsafe(self._counts_changed)

        unwatch = self._calls.watch(changed)
        try:
            await super().run(devmode=devmode, unregistered=unregistered)
        finally:
            unwatch()
            if self._recheck is not None:
                self._recheck.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._recheck

    def _counts_changed(self) -> None:
        self._recheck_wanted = True
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.create_task(self._recheck_status(), name="capacity_recheck")

    async def _recheck_status(self) -> None:
        while self._recheck_wanted:  # changes during a send are read by the next pass
            self._recheck_wanted = False
            await self._send_status_if_flipped()

    async def _invoke_load_fnc(self) -> float:
        load: float = await super()._invoke_load_fnc()
        await self._send_status_if_flipped()
        return load

    async def _send_status_if_flipped(self) -> None:
        previous = getattr(self, "_previous_status", None)
        if previous is None or getattr(self, "_draining", False):
            return  # not registered yet, or draining (always full)
        threshold = ServerEnvOption.getvalue(self._load_threshold, self._devmode)
        full = self._get_effective_load() >= threshold
        if full != (previous == agent_proto.WorkerStatus.WS_FULL):
            await self._update_worker_status()

    async def _update_worker_status(self) -> None:
        # A call can end between this count and the framework's own (for the status): if it
        # went out as "available" with a full worker's load, it is sent again from new counts.
        for _ in range(3):
            load = self._load_now()
            self._worker_load = load
            await super()._update_worker_status()
            sent = getattr(self, "_previous_status", None)
            if load < 1.0 or sent != agent_proto.WorkerStatus.WS_AVAILABLE or self._draining:
                return

    def _load_now(self) -> float:
        return self._calls.load_now()

    def _get_effective_load(self) -> float:
        return self._calls.effective_load(int(getattr(self, "_reserved_slots", 0)))


class FirstwordServer(AgentServerWithRoutes, CapacityAwareServer):
    """The worker's AgentServer: our health routes, and jobs accepted by counting calls."""
