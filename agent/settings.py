"""Process-wide settings, read from the environment and an optional `.env` file.

Every knob a deployer may turn lives here, typed; secrets are `SecretStr` so that they
never end up in a log line or a repr by accident.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Hold slots per conversation slot, when FIRSTWORD_HOLD_SLOTS is not set: a worker takes a
# burst of 4x its conversations (FIRSTWORD_MAX_CALLS) and every caller in it hears the
# business at once (the target is 3x; one more for a burst that outgrows it). From
# their measured cost: a held call is about a bare LiveKit room (a published track fed in
# real time, the caller's track subscribed; no VAD, STT or LLM), which costs 0.056-0.061 of
# a core (scripts/bench-memory-floor.sh, an upper bound: that bench also makes a tone and
# reads the caller's audio in Python, which a held call does not), against 0.22-0.3 of a
# core for a conversation (scripts/bench-capacity.sh). So the 3 holds of each conversation
# slot cost at most ~0.18 of a core, less than the conversation itself: a worker with every
# slot taken uses at most 1.6-1.8x the CPU of its conversations alone, only during a burst
# (a held call is promoted when a slot frees, or handed off after FIRSTWORD_MAX_HOLD).
# Derived from FIRSTWORD_MAX_CALLS, so it follows that setting and its default.
HOLD_SLOTS_PER_CALL = 3


class Settings(BaseSettings):
    """Settings of the worker, the caller simulator and the scripts."""

    model_config = SettingsConfigDict(
        # `.env.local` as LiveKit's templates and `lk app env` write it; later files win.
        env_file=(PROJECT_ROOT / ".env", ".env", PROJECT_ROOT / ".env.local", ".env.local"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # LiveKit connection. The names are LiveKit's own so that `lk` and the SDKs agree.
    livekit_url: str = Field(default="ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    livekit_api_key: str = Field(default="devkey", validation_alias="LIVEKIT_API_KEY")
    livekit_api_secret: SecretStr = Field(
        default=SecretStr("secret"), validation_alias="LIVEKIT_API_SECRET"
    )

    # "auto": each account gets the cloud engines it asks for when their credentials are
    # set, local ones otherwise; "local": every account runs on this machine's engines.
    providers: Literal["auto", "local"] = Field(
        default="auto", validation_alias="FIRSTWORD_PROVIDERS"
    )

    # Cloud credentials, in the names the providers' own SDKs read.
    google_api_key: SecretStr | None = Field(default=None, validation_alias="GOOGLE_API_KEY")
    google_credentials_file: Path | None = Field(
        default=None, validation_alias="GOOGLE_APPLICATION_CREDENTIALS"
    )
    eleven_api_key: SecretStr | None = Field(default=None, validation_alias="ELEVEN_API_KEY")
    # Endpoint overrides (a regional endpoint, a proxy, or the loopback stand-ins). The gRPC
    # ones are host:port; "insecure" is for loopback only (no TLS, anonymous credentials).
    gemini_base_url: str | None = Field(default=None, validation_alias="GOOGLE_GEMINI_BASE_URL")
    elevenlabs_base_url: str | None = Field(
        default=None, validation_alias="FIRSTWORD_ELEVENLABS_BASE_URL"
    )
    google_speech_endpoint: str | None = Field(
        default=None, validation_alias="FIRSTWORD_GOOGLE_SPEECH_ENDPOINT"
    )
    google_tts_endpoint: str | None = Field(
        default=None, validation_alias="FIRSTWORD_GOOGLE_TTS_ENDPOINT"
    )
    google_grpc_insecure: bool = Field(default=False, validation_alias="FIRSTWORD_GOOGLE_INSECURE")

    # How long each cloud operation may take before the call moves to the next provider.
    # A caller notices silence after ~1 s, so these are far below the plugins' 10 s.
    connect_timeout: float = Field(default=1.0, gt=0, validation_alias="FIRSTWORD_CONNECT_TIMEOUT")
    stt_timeout: float = Field(default=1.0, gt=0, validation_alias="FIRSTWORD_STT_TIMEOUT")
    llm_first_token_timeout: float = Field(
        default=1.5, gt=0, validation_alias="FIRSTWORD_LLM_FIRST_TOKEN_TIMEOUT"
    )
    tts_first_byte_timeout: float = Field(
        default=0.8, gt=0, validation_alias="FIRSTWORD_TTS_FIRST_BYTE_TIMEOUT"
    )
    # Hedging: when a cloud step is this late (well under its timeout above), the local
    # engine starts in parallel and whichever is ready first is used; 0 turns it off.
    # Chosen from the providers' normal latencies (STT final ~0.2-0.3 s after the pause,
    # Gemini first token ~0.3-0.4 s, ElevenLabs first byte ~0.1-0.2 s) plus a margin, so a
    # healthy cloud almost never triggers it, and hedge + local engine stays under ~1 s.
    hedge_after_stt: float = Field(default=0.5, ge=0, validation_alias="FIRSTWORD_HEDGE_AFTER_STT")
    hedge_after_llm: float = Field(default=0.6, ge=0, validation_alias="FIRSTWORD_HEDGE_AFTER_LLM")
    hedge_after_tts: float = Field(default=0.3, ge=0, validation_alias="FIRSTWORD_HEDGE_AFTER_TTS")
    # A whole answer (LLM) or sentence (TTS) may take this long once it has started.
    cloud_total_timeout: float = Field(
        default=15.0, gt=0, validation_alias="FIRSTWORD_CLOUD_TOTAL_TIMEOUT"
    )
    # Retries of the same provider before failing over; 0: fail over at once.
    cloud_retries: int = Field(default=0, ge=0, le=3, validation_alias="FIRSTWORD_CLOUD_RETRIES")
    # Circuit breaker per provider endpoint, shared by every call of a process.
    breaker_failures: int = Field(default=3, ge=1, validation_alias="FIRSTWORD_BREAKER_FAILURES")
    breaker_cooldown: float = Field(
        default=15.0, gt=0, validation_alias="FIRSTWORD_BREAKER_COOLDOWN"
    )
    # A call's cloud connections idle this long are opened again before the next turn.
    rewarm_idle_seconds: float = Field(default=45.0, gt=0, validation_alias="FIRSTWORD_REWARM_IDLE")

    accounts_dir: Path = Field(
        default=PROJECT_ROOT / "config" / "accounts", validation_alias="FIRSTWORD_ACCOUNTS_DIR"
    )
    default_account: str = Field(
        default="harbor-dental", validation_alias="FIRSTWORD_DEFAULT_ACCOUNT"
    )

    # Model locations; empty means "the file inside the pinned registry package".
    whisper_model_dir: Path | None = Field(default=None, validation_alias="FIRSTWORD_WHISPER_DIR")
    piper_voice_path: Path | None = Field(default=None, validation_alias="FIRSTWORD_PIPER_VOICE")
    embedding_model_path: Path | None = Field(
        default=None, validation_alias="FIRSTWORD_EMBEDDING_MODEL"
    )
    verify_weights: bool = Field(default=True, validation_alias="FIRSTWORD_VERIFY_WEIGHTS")

    cache_dir: Path = Field(default=PROJECT_ROOT / ".cache", validation_alias="FIRSTWORD_CACHE_DIR")
    inference_threads: int = Field(default=2, ge=1, validation_alias="FIRSTWORD_INFERENCE_THREADS")

    # Whisper: "short" encodes a ~10 s window around the utterance (guarded, falls back to
    # the full window); "full" is faster-whisper's own 30 s window.
    whisper_mode: Literal["short", "full"] = Field(
        default="short", validation_alias="FIRSTWORD_WHISPER_MODE"
    )
    # Turn-taking: the VAD's silence that ends an utterance, and the endpointing delays
    # after it (min when the turn detector is sure the caller finished, max when not).
    # 0.25 s / 0.25 s (were 0.35 / 0.4, then 0.3 / 0.3): the short delay adds no wait after
    # the VAD's end of speech; the detector needs at least 0.25 s of VAD silence. Measured
    # with speculation at 0.1 s: p50 496 against 534 ms at 0.3 / 0.3 / 0.15, cut-offs on the
    # paused questions unchanged. See README "Turn-taking, and the answer benchmark".
    vad_min_silence: float = Field(
        default=0.25, ge=0.25, le=2.0, validation_alias="FIRSTWORD_VAD_MIN_SILENCE"
    )
    # The VAD keeps each utterance's audio (Whisper transcribes it) in a buffer allocated at
    # the caller's sample rate for this many seconds of speech: Silero's default 60 s is 5.8 MB
    # per VAD stream (two per call) at 48 kHz, the largest piece of a call's memory. 20 s
    # (1.97 MB) still holds any one question; speech past it is dropped from that utterance
    # (Silero logs a warning).
    vad_max_speech: float = Field(
        default=20.0, ge=5.0, le=60.0, validation_alias="FIRSTWORD_VAD_MAX_SPEECH"
    )
    # Silero's speech probability that starts an utterance, for callers on the web (Silero's
    # own: 0.5; phone callers have their own below).
    vad_activation: float = Field(
        default=0.5, gt=0.0, lt=1.0, validation_alias="FIRSTWORD_VAD_ACTIVATION"
    )
    # ... and the probability the speech must fall under (for FIRSTWORD_VAD_MIN_SILENCE) to
    # end the utterance; not above the activation.
    vad_deactivation: float = Field(
        default=0.35, gt=0.0, lt=1.0, validation_alias="FIRSTWORD_VAD_DEACTIVATION"
    )
    # The same for phone callers (SIP participants). A phone line carries 300-3400 Hz only,
    # and Silero's 16 kHz model is unsure of band-limited speech (mean probability over a
    # question's speech 0.3-0.8 where the same words in full band get 0.95-1.0): with its own
    # thresholds, dips inside a sentence ended the utterance there (half a question answered)
    # or started it late (its first words never transcribed). 0.3 / 0.25 measured with
    # scripts/bench-vad.sh and the answer bench: benchmarks/RESULTS.md "The VAD on a phone
    # line". Not for web callers: it adds ~20 ms to every end of speech and gains them little.
    phone_vad_activation: float = Field(
        default=0.3, gt=0.0, lt=1.0, validation_alias="FIRSTWORD_PHONE_VAD_ACTIVATION"
    )
    # ... and the phone callers' probability that ends an utterance; not above theirs that
    # starts one.
    phone_vad_deactivation: float = Field(
        default=0.25, gt=0.0, lt=1.0, validation_alias="FIRSTWORD_PHONE_VAD_DEACTIVATION"
    )
    min_endpointing_delay: float = Field(
        default=0.25, ge=0, le=5.0, validation_alias="FIRSTWORD_MIN_ENDPOINTING_DELAY"
    )
    max_endpointing_delay: float = Field(
        default=1.5, ge=0, le=10.0, validation_alias="FIRSTWORD_MAX_ENDPOINTING_DELAY"
    )
    # A transcript that reads unfinished ("So my question is...") waits this long for the
    # rest (agent/call/turn_taking.py): callers pause 1-1.5 s there, and on a busy 2-core worker
    # the VAD heard a 1.2 s pause end only after the 1.5 s `max_endpointing_delay` had run.
    unfinished_delay: float = Field(
        default=2.0, ge=0, le=10.0, validation_alias="FIRSTWORD_UNFINISHED_DELAY"
    )
    # Speculative recognition (agent/engines/speculative_stt.py): the local Whisper starts on
    # the utterance after this much silence, before the VAD's end of speech, and the result
    # is kept if the caller stays silent.
    speculative_stt: bool = Field(default=True, validation_alias="FIRSTWORD_SPECULATIVE_STT")
    speculate_after: float = Field(
        default=0.1, gt=0, le=2.0, validation_alias="FIRSTWORD_SPECULATE_AFTER"
    )
    # The turn detector's threshold: below this end-of-turn probability the caller is taken
    # to be mid-sentence and the turn waits the long delay. 0 keeps v1-mini's own (0.36 for
    # English), which on the labelled turn set heard 64 % of mid-sentence pauses as ends
    # (benchmarks/RESULTS.md "The turn-taking bench").
    turn_threshold: float = Field(
        default=0.0, ge=0, lt=1.0, validation_alias="FIRSTWORD_TURN_THRESHOLD"
    )
    # Early end of turn (agent/call/turn_taking.py): a transcript the FAQ answerer matches at or
    # above this score ends the turn after the short delay even when the turn detector is
    # unsure; 0 turns it off.
    early_turn_score: float = Field(
        default=0.8, ge=0, le=2.0, validation_alias="FIRSTWORD_EARLY_TURN_SCORE"
    )
    # A whole question ends the turn (agent/call/turn_taking.py): a transcript Whisper closed with
    # a question mark, whose last words do not ask for more ("Could you tell me?"), ends the
    # turn after the short delay even when the turn detector is unsure and no FAQ matched
    # (off-topic questions, which are handed off).
    question_ends_turn: bool = Field(default=True, validation_alias="FIRSTWORD_QUESTION_ENDS_TURN")
    # Barge-in: seconds of caller speech over the agent that pause it (the framework's
    # `min_duration` of interruptions); its words then stop it, or it resumes. 0.1 s: the
    # agent silent ~0.3 s after the caller's first word (0.2 s: ~0.4 s, 0.5 s: ~0.65 s), with
    # no more backchannels stopping it (benchmarks/RESULTS.md "Barge-in and backchannels").
    min_interruption: float = Field(
        default=0.1, gt=0, le=3.0, validation_alias="FIRSTWORD_MIN_INTERRUPTION"
    )
    # Barge-in: seconds after caller speech that brought no words (a cough, or a backchannel
    # kept out by FIRSTWORD_BACKCHANNEL_FILTER) before the paused agent resumes its sentence
    # (the framework's `false_interruption_timeout`; its default 2.0 left a 2 s hole).
    false_interruption_timeout: float = Field(
        default=0.6, gt=0, le=10.0, validation_alias="FIRSTWORD_FALSE_INTERRUPTION_TIMEOUT"
    )
    # Barge-in: a few words over the agent that do not ask it to stop ("mm-hmm", "okay",
    # "right"; or none: a cough) leave it going (agent/call/barge_in.py); off, every transcript
    # over the agent interrupts it.
    backchannel_filter: bool = Field(default=True, validation_alias="FIRSTWORD_BACKCHANNEL_FILTER")

    # FAQ answerer: below this cosine similarity the caller is handed to a person.
    faq_min_score: float = Field(
        default=0.5, ge=0, le=1, validation_alias="FIRSTWORD_FAQ_MIN_SCORE"
    )

    # Every FAQ answer rendered in the account's voice at prewarm, so a matched answer
    # plays with no synthesis (agent/engines/answers.py).
    answer_audio_cache: bool = Field(default=True, validation_alias="FIRSTWORD_ANSWER_AUDIO_CACHE")

    # Worker: warm processes kept ready, and how many calls one worker takes before it
    # reports itself full. An empty agent name means automatic dispatch to every room.
    idle_processes: int = Field(default=2, ge=0, validation_alias="FIRSTWORD_IDLE_PROCESSES")
    # Reconnects to the LiveKit server after the worker's connection drops, 2 s apart and
    # growing to 10 s (the framework's backoff): 10 rides out ~70 s, a server restart or a
    # network blip, instead of the worker exiting and ending every call on it. A server that
    # is not there at start is reported at once by the preflight check, not by these.
    server_retries: int = Field(
        default=10, ge=0, le=1000, validation_alias="FIRSTWORD_SERVER_RETRIES"
    )
    # Measured with scripts/bench-capacity.sh on the 2-core machine (README, "Measuring
    # capacity, and sizing a worker"); re-measure on the machine type you deploy.
    max_concurrent_calls: int = Field(default=2, ge=1, validation_alias="FIRSTWORD_MAX_CALLS")
    # Calls taken beyond FIRSTWORD_MAX_CALLS in a light hold mode (greeting and a hold line,
    # no STT/VAD/LLM) until a conversation slot frees; 0 turns overflow off
    # (agent/worker/capacity.py).
    # Unset: HOLD_SLOTS_PER_CALL per conversation slot (`hold_slots`, below).
    hold_slots_setting: int | None = Field(
        default=None, ge=0, validation_alias="FIRSTWORD_HOLD_SLOTS"
    )
    # Longest a held caller waits for a slot before being handed off (the handoff phrase).
    max_hold_seconds: float = Field(default=60.0, gt=0, validation_alias="FIRSTWORD_MAX_HOLD")
    agent_name: str = Field(default="", validation_alias="FIRSTWORD_AGENT_NAME")
    # Address of the health server and the metrics endpoint. All IPv4 interfaces by default:
    # Kubernetes probes and Prometheus reach a pod on its own IP. (The framework's default,
    # "", also binds IPv6 and, with port 0, on a different port than the one it logs.)
    http_host: str = Field(default="0.0.0.0", validation_alias="FIRSTWORD_HTTP_HOST")
    # The worker's health/status HTTP server; 0 picks a free port (tests, several workers).
    http_port: int = Field(default=8081, ge=0, validation_alias="FIRSTWORD_HTTP_PORT")
    # Prometheus metrics of the worker and its calls; 0 picks a free port (logged), -1 is off.
    metrics_port: int = Field(default=9464, ge=-1, validation_alias="FIRSTWORD_METRICS_PORT")
    # "thread": every call runs in the worker process and shares one copy of the engines,
    # so a new call never waits for models to load. "process": one process per call,
    # isolated, each loading its own engines (about 0.8 GB and 2 s of CPU per process).
    job_executor: Literal["thread", "process"] = Field(
        default="thread", validation_alias="FIRSTWORD_JOB_EXECUTOR"
    )
    # How long a call trusts the accounts it has before checking their files for changes.
    account_ttl_seconds: float = Field(default=5.0, ge=0, validation_alias="FIRSTWORD_ACCOUNT_TTL")

    # "auto": BVC only against LiveKit Cloud servers; "on": always (accounts that ask).
    noise_cancellation: Literal["auto", "on", "off"] = Field(
        default="auto", validation_alias="FIRSTWORD_NOISE_CANCELLATION"
    )

    # Web app (`python -m agent.web`): the call page and the token endpoint. Loopback by
    # default; put it behind a TLS proxy to serve real callers.
    web_host: str = Field(default="127.0.0.1", validation_alias="FIRSTWORD_WEB_HOST")
    web_port: int = Field(default=8090, ge=0, validation_alias="FIRSTWORD_WEB_PORT")
    # Tokens per client address: a burst, then this many a minute.
    web_token_burst: int = Field(default=5, ge=1, validation_alias="FIRSTWORD_WEB_TOKEN_BURST")
    web_tokens_per_minute: float = Field(
        default=20.0, gt=0, validation_alias="FIRSTWORD_WEB_TOKENS_PER_MINUTE"
    )
    # What callers and the agent said, as log lines ("transcript user: ..."): off, since
    # callers say names, numbers and health details; turn it on where logs may hold them.
    log_transcripts: bool = Field(default=False, validation_alias="FIRSTWORD_LOG_TRANSCRIPTS")
    # The longest a call may last (seconds; 0: no limit). At the limit the agent finishes its
    # sentence, says the call must end, and ends it (agent/call/call_limit.py).
    max_call_seconds: float = Field(
        default=1800.0, ge=0, validation_alias="FIRSTWORD_MAX_CALL_SECONDS"
    )
    # Who may call firstword's SIP trunks (agent/sip/provision.py): the carrier's addresses
    # (IPs or networks, comma-separated) and/or digest credentials. Unset: whatever the trunk
    # already has (set by hand) is kept; a trunk with neither takes calls from anyone.
    sip_allowed_addresses: str = Field(
        default="", validation_alias="FIRSTWORD_SIP_ALLOWED_ADDRESSES"
    )
    # The carrier's digest credentials for those trunks (user name, then password).
    sip_auth_username: str | None = Field(
        default=None, validation_alias="FIRSTWORD_SIP_AUTH_USERNAME"
    )
    # The password of FIRSTWORD_SIP_AUTH_USERNAME (a secret: never logged).
    sip_auth_password: SecretStr | None = Field(
        default=None, validation_alias="FIRSTWORD_SIP_AUTH_PASSWORD"
    )
    # Call-backs from the desk (agent/web/callback.py): the carrier's SIP address (host[:port])
    # that the bridge dials out through, on a trunk named `firstword-outbound` that
    # provisioning keeps (agent/sip/provision.py). Empty: the desk offers no call-backs.
    sip_outbound_address: str = Field(default="", validation_alias="FIRSTWORD_SIP_OUTBOUND_ADDRESS")
    # The carrier's digest credentials for calls out (user name, then password).
    sip_outbound_username: str | None = Field(
        default=None, validation_alias="FIRSTWORD_SIP_OUTBOUND_USERNAME"
    )
    # The password of FIRSTWORD_SIP_OUTBOUND_USERNAME (a secret: never logged).
    sip_outbound_password: SecretStr | None = Field(
        default=None, validation_alias="FIRSTWORD_SIP_OUTBOUND_PASSWORD"
    )
    # Proxies in front of the web app whose X-Forwarded-For is believed (addresses or
    # networks, comma-separated): the rate limit then keys on the caller, not the proxy.
    web_trusted_proxies: str = Field(default="", validation_alias="FIRSTWORD_WEB_TRUSTED_PROXIES")
    # Calls one client (address) may hold open at once through the token endpoint; 0: no cap.
    # 5: the call page asks for a token as it opens, so a few reloads hold rooms briefly too.
    web_max_calls_per_client: int = Field(
        default=5, ge=0, validation_alias="FIRSTWORD_WEB_MAX_CALLS_PER_CLIENT"
    )
    # A pre-dispatched agent waits this long for its caller, then closes the room, so a
    # page that asked for a token and never joined holds a worker slot only briefly.
    caller_wait_timeout: float = Field(
        default=20.0, gt=0, validation_alias="FIRSTWORD_CALLER_WAIT_TIMEOUT"
    )

    # Front desk and handoff (agent/call/handoff/core.py, agent/web/desk.py). Staff logins (name,
    # scrypt hash, accounts), written by `python -m agent.web add-staff`. The desk page and its
    # API are closed while it lists nobody, and the worker hands a web caller to the desk only
    # when someone there can see the call's account. Empty: no file, the desk stays closed.
    staff_file: Path | None = Field(
        default=PROJECT_ROOT / "staff.json", validation_alias="FIRSTWORD_STAFF_FILE"
    )
    # A desk login lasts this long (a shift), unless its person logs out first.
    desk_session_hours: float = Field(
        default=8.0, gt=0, le=168, validation_alias="FIRSTWORD_DESK_SESSION_HOURS"
    )
    # Replaced by staff logins: one shared password saw every business. Set, it stops the
    # worker and the web app with a message saying what to do, so a deployment upgraded with
    # it does not quietly lose its desk.
    desk_secret: SecretStr | None = Field(default=None, validation_alias="FIRSTWORD_DESK_SECRET")
    # How long a handoff waits for a person before the caller hears the no-take line.
    handoff_timeout: float = Field(
        default=30.0, gt=0, le=600, validation_alias="FIRSTWORD_HANDOFF_TIMEOUT"
    )
    # Where each handoff (and the message of one nobody took) is kept: <dir>/<account>.jsonl.
    # Empty: <FIRSTWORD_CACHE_DIR>/handoffs. The worker writes it and the desk reads it.
    handoff_records_dir: Path | None = Field(
        default=None, validation_alias="FIRSTWORD_HANDOFF_RECORDS"
    )
    # The call history (agent/call/history.py, agent/accounts/history_store.py): one record
    # per call with what was asked and answered and the questions the agent could not
    # answer, in a database, shown to the account's staff on the desk. Off: no record.
    call_history: bool = Field(default=True, validation_alias="FIRSTWORD_CALL_HISTORY")
    # Where the SQLite file of the call history is kept (history.sqlite3 in it). Empty:
    # <FIRSTWORD_CACHE_DIR>/history. The worker writes it and the desk reads it (a shared
    # volume where they run apart on one host; several hosts: FIRSTWORD_CALL_HISTORY_URL).
    call_history_dir_setting: Path | None = Field(
        default=None, validation_alias="FIRSTWORD_CALL_HISTORY_DIR"
    )
    # A database URL for the call history instead of the SQLite file, for several web app
    # instances and workers on several hosts: postgresql+psycopg://user:password@host/db
    # (a secret: it may carry the password; never logged). Its schema is migrated on first use.
    call_history_url: SecretStr | None = Field(
        default=None, validation_alias="FIRSTWORD_CALL_HISTORY_URL"
    )
    # Days a call stays in the history; older ones are deleted (checked at most hourly when a
    # call is added). 0: kept for ever.
    call_history_days: float = Field(
        default=90.0, ge=0, validation_alias="FIRSTWORD_CALL_HISTORY_DAYS"
    )
    # Voice messages (agent/call/voicemail.py): after a handoff nobody took, the caller is
    # asked to leave a message after a tone; it is recorded from their own track, transcribed
    # and kept per account (<dir>/<account>.jsonl + a WAV each), and the desk plays it. Off:
    # the caller hears that someone will get back to them, and the call goes on with the agent.
    voice_messages: bool = Field(default=True, validation_alias="FIRSTWORD_VOICE_MESSAGES")
    # Where voice messages are kept. Empty: <FIRSTWORD_CACHE_DIR>/messages. The worker writes
    # them and the desk reads them (a shared volume where they run apart).
    voice_messages_dir_setting: Path | None = Field(
        default=None, validation_alias="FIRSTWORD_VOICE_MESSAGES_DIR"
    )
    # A message ends this long after the caller's last word, ...
    voice_message_silence_seconds: float = Field(
        default=3.0, gt=0, le=30, validation_alias="FIRSTWORD_VOICE_MESSAGE_SILENCE_SECONDS"
    )
    # ... at this length at the latest, ...
    voice_message_max_seconds: float = Field(
        default=120.0, gt=0, le=600, validation_alias="FIRSTWORD_VOICE_MESSAGE_MAX_SECONDS"
    )
    # ... and is not taken when the caller says nothing this long after the tone.
    voice_message_start_seconds: float = Field(
        default=8.0, gt=0, le=60, validation_alias="FIRSTWORD_VOICE_MESSAGE_START_SECONDS"
    )

    # Crash recovery (agent/worker/recovery.py): on when REDIS_URL is set. Each call holds a lease
    # in Redis for this long; a call whose lease ran out (its worker died) is dispatched
    # again by a surviving worker, which says the resume line in the account's voice.
    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    crash_recovery: bool = Field(default=True, validation_alias="FIRSTWORD_CRASH_RECOVERY")
    recovery_lease_ms: int = Field(
        default=1000, ge=200, le=60000, validation_alias="FIRSTWORD_RECOVERY_LEASE_MS"
    )
    resume_line: str = Field(
        default="Sorry, I lost you for a moment. How can I help?",
        min_length=1,
        validation_alias="FIRSTWORD_RESUME_LINE",
    )

    # A caller left without an agent (their room's dispatch found no available worker) is
    # dispatched again after this many seconds, by a worker with room (agent/worker/unanswered.py);
    # 0 turns the sweep off. Rooms are swept every FIRSTWORD_UNANSWERED_SWEEP seconds.
    unanswered_after: float = Field(
        default=2.0, ge=0, le=60.0, validation_alias="FIRSTWORD_UNANSWERED_AFTER"
    )
    unanswered_sweep: float = Field(
        default=1.0, gt=0, le=60.0, validation_alias="FIRSTWORD_UNANSWERED_SWEEP"
    )
    # glibc malloc arenas for the worker's threads (agent/worker/native_memory.py); 0: glibc's
    # default (8 per core). Measured: README "Memory per call".
    malloc_arenas: int = Field(default=2, ge=0, validation_alias="FIRSTWORD_MALLOC_ARENAS")
    # Give the allocator's free pages back to the system after each call.
    malloc_trim: bool = Field(default=True, validation_alias="FIRSTWORD_MALLOC_TRIM")
    # Trace the Python heap (tracemalloc) in every worker/job process and export it as
    # firstword_python_heap_bytes (agent/worker/heap.py): for sizing a worker with
    # scripts/bench-capacity.sh. Off by default: tracing slows every Python allocation.
    tracemalloc: bool = Field(default=False, validation_alias="FIRSTWORD_TRACEMALLOC")
    # The caller's audio as the session hears it (agent/call/session.py): 16 kHz, the rate of
    # the VAD, the turn detector and Whisper, so livekit-rtc's decoder resamples once in
    # native code instead of each of them again per frame in Python (was the framework's
    # 24 kHz); and no gain control on the agent's side: browsers and phone networks level the
    # caller's voice already, and WebRTC's AGC on every frame was a tenth of the worker's CPU.
    input_sample_rate: int = Field(
        default=16000, ge=8000, le=48000, validation_alias="FIRSTWORD_INPUT_SAMPLE_RATE"
    )
    input_agc: bool = Field(default=False, validation_alias="FIRSTWORD_INPUT_AGC")
    # One VAD stream per call, heard by the session and the speculative recogniser alike
    # (agent/engines/shared_vad.py); off: each opens its own (two Silero runs per window).
    shared_vad: bool = Field(default=True, validation_alias="FIRSTWORD_SHARED_VAD")
    # Silero's window inference (~0.2 ms) on the call's loop instead of a thread hop per
    # 32 ms window; the rest of a call's thread work in one pool per process (compat.py,
    # `InlineVadExecutor`).
    inline_vad: bool = Field(default=True, validation_alias="FIRSTWORD_INLINE_VAD")
    # Each call's audio events to that call's loop only: livekit-rtc wakes every call's loop
    # for every caller frame and every spoken frame's callback of the process, a cost that
    # grows with the square of the calls (compat.py, `route_ffi_events`).
    ffi_event_routing: bool = Field(default=True, validation_alias="FIRSTWORD_FFI_EVENT_ROUTING")
    # Garbage collection (agent/worker/stalls.py): freeze what prewarm loaded and collect the
    # youngest generation 10x less often, so no collection stalls every call's audio at once; off
    # keeps the interpreter's defaults (to measure against: scripts/bench-load.sh).
    gc_tuning: bool = Field(default=True, validation_alias="FIRSTWORD_GC_TUNING")
    # With it, when the last call on a process ends: collect and freeze again what lives on
    # (what the first calls loaded after prewarm), at most once a minute (agent/worker/stalls.py).
    gc_refreeze: bool = Field(default=True, validation_alias="FIRSTWORD_GC_REFREEZE")
    # Caches in front of the cloud engines (agent/cloud/caches.py). The response cache: a
    # repeated question skips the cloud model (entries live TTL seconds, per account
    # version); a cached question must be this similar (MiniLM cosine, normalised text).
    response_cache: bool = Field(default=True, validation_alias="FIRSTWORD_RESPONSE_CACHE")
    response_cache_ttl: float = Field(
        default=3600.0, gt=0, validation_alias="FIRSTWORD_RESPONSE_CACHE_TTL"
    )
    response_cache_similarity: float = Field(
        default=0.92, gt=0, le=1, validation_alias="FIRSTWORD_RESPONSE_CACHE_SIMILARITY"
    )
    # Cloud voices' audio by sentence: memory (MB, least recently used out) + disk + Redis.
    cloud_voice_cache: bool = Field(default=True, validation_alias="FIRSTWORD_CLOUD_VOICE_CACHE")
    cloud_voice_cache_mb: int = Field(
        default=64, ge=1, validation_alias="FIRSTWORD_CLOUD_VOICE_CACHE_MB"
    )
    # The shared layer in Redis (REDIS_URL) behind both caches: audio blobs up to this size
    # and age; every Redis operation bounded by the timeout; after a failure Redis is left
    # alone this long (the caches fail open to memory and disk, with one warning).
    shared_cache: bool = Field(default=True, validation_alias="FIRSTWORD_SHARED_CACHE")
    shared_audio_ttl: float = Field(
        default=86400.0, gt=0, validation_alias="FIRSTWORD_SHARED_AUDIO_TTL"
    )
    shared_audio_max_kb: int = Field(
        default=1024, ge=1, validation_alias="FIRSTWORD_SHARED_AUDIO_MAX_KB"
    )
    redis_timeout: float = Field(
        default=0.1, gt=0, le=5.0, validation_alias="FIRSTWORD_REDIS_TIMEOUT"
    )
    redis_retry_after: float = Field(
        default=15.0, gt=0, validation_alias="FIRSTWORD_REDIS_RETRY_AFTER"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="FIRSTWORD_LOG_LEVEL"
    )

    @model_validator(mode="after")
    def _vad_thresholds(self) -> Settings:
        for prefix, on, off in (
            ("FIRSTWORD_VAD", self.vad_activation, self.vad_deactivation),
            ("FIRSTWORD_PHONE_VAD", self.phone_vad_activation, self.phone_vad_deactivation),
        ):
            if off > on:
                raise ValueError(
                    f"{prefix}_DEACTIVATION ({off}) must not be above {prefix}_ACTIVATION ({on})"
                )
        return self

    @field_validator("desk_secret")
    @classmethod
    def _empty_desk_secret_is_unset(cls, secret: SecretStr | None) -> SecretStr | None:
        # Empty means unset. A set one is refused at start (agent/worker/preflight.py), without
        # printing it (a validation error here would).
        if secret is None or not secret.get_secret_value():
            return None
        return secret

    @field_validator("staff_file", mode="before")
    @classmethod
    def _empty_staff_file_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def hold_slots(self) -> int:
        """FIRSTWORD_HOLD_SLOTS, or HOLD_SLOTS_PER_CALL x FIRSTWORD_MAX_CALLS when unset."""
        if self.hold_slots_setting is not None:
            return self.hold_slots_setting
        return HOLD_SLOTS_PER_CALL * self.max_concurrent_calls

    @property
    def handoff_records(self) -> Path:
        return self.handoff_records_dir or self.cache_dir / "handoffs"

    @property
    def call_history_dir(self) -> Path:
        return self.call_history_dir_setting or self.cache_dir / "history"

    @property
    def call_history_where(self) -> str:
        """The call history's database URL, or its SQLite folder (agent/accounts/history_store)."""
        if self.call_history_url is not None and self.call_history_url.get_secret_value():
            return self.call_history_url.get_secret_value()
        return str(self.call_history_dir)

    @property
    def voice_messages_dir(self) -> Path:
        return self.voice_messages_dir_setting or self.cache_dir / "messages"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
