"""Print docs/configuration.md: every setting of `agent.settings.Settings` as a markdown table.

The table is generated so that it cannot drift from the code: the environment variable, the
type (with its bounds), the default and the description all come from `Settings` itself. The
description is the field's `description` (or, where it has none, a line from `NOTES` below)
followed by the comment block directly above the field in agent/settings.py. `NOTES` is for
fields with no comment of their own, or whose comment speaks for a group of fields; give a
new field a comment instead of adding to it.

    .venv/bin/python scripts/settings_doc.py > docs/configuration.md
    .venv/bin/python scripts/settings_doc.py --check     # exit 1 when the file differs

tests/test_docs.py regenerates the page and fails when the committed one differs.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

# Run as a script (`python scripts/settings_doc.py`), the project root is not on sys.path.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.settings import PROJECT_ROOT, Settings  # noqa: E402

DOC_PATH = ROOT / "docs" / "configuration.md"

# What a setting is, for fields with no `description` and no comment right above them in
# agent/settings.py, or whose comment introduces a group. Keyed by environment variable.
NOTES: dict[str, str] = {
    "LIVEKIT_URL": "LiveKit server the worker registers with and callers join.",
    "GOOGLE_API_KEY": "Gemini API key (secret).",
    "GOOGLE_GEMINI_BASE_URL": "Gemini REST endpoint override.",
    "FIRSTWORD_CONNECT_TIMEOUT": "Seconds to open an HTTP connection to a cloud provider.",
    "FIRSTWORD_HEDGE_AFTER_STT": (
        "Seconds after the caller paused without the cloud's final transcript before Whisper "
        "transcribes the kept utterance and races it (0, or at least `FIRSTWORD_STT_TIMEOUT`: "
        "off)."
    ),
    "FIRSTWORD_BREAKER_FAILURES": "Failures or timeouts in a row that open a provider's breaker.",
    "FIRSTWORD_WHISPER_DIR": "Another Whisper model folder (not hash-checked).",
    "FIRSTWORD_VAD_MIN_SILENCE": "Seconds of silence that end an utterance for the VAD.",
    "FIRSTWORD_IDLE_PROCESSES": "Warm job threads or processes kept ready (`start` mode).",
    "FIRSTWORD_SERVER_RETRIES": (
        "Reconnects to the LiveKit server after a drop (~70 s at 10) before the worker exits."
    ),
    "FIRSTWORD_MAX_CALLS": ("Conversations per worker; further calls are held (docs/capacity.md)."),
    "FIRSTWORD_WEB_HOST": "Address of the web app (`python -m agent.web`).",
    "FIRSTWORD_DESK_SECRET": (
        "Replaced by staff logins (`python -m agent.web add-staff`); set, nothing starts."
    ),
    "FIRSTWORD_STAFF_FILE": (
        "The desk's staff logins (scrypt hashes, accounts); empty: none, the desk is closed."
    ),
    "FIRSTWORD_DESK_SESSION_HOURS": "How long a desk login lasts unless its person logs out.",
    "REDIS_URL": (
        "Redis for crash recovery and the shared caches (secret; e.g. "
        "`redis://127.0.0.1:6379/0`); unset: both off."
    ),
    "FIRSTWORD_RESPONSE_CACHE": "Answer a repeated question to the cloud model from the cache.",
    "FIRSTWORD_SHARED_CACHE": (
        "Share the response and cloud-voice caches through Redis (needs `REDIS_URL`)."
    ),
    "LIVEKIT_API_KEY": "API key for the LiveKit server.",
    "LIVEKIT_API_SECRET": "API secret for the LiveKit server (a secret: never logged).",
    "GOOGLE_APPLICATION_CREDENTIALS": "Service-account file for Google STT and TTS.",
    "ELEVEN_API_KEY": "ElevenLabs API key (secret).",
    "FIRSTWORD_ELEVENLABS_BASE_URL": "ElevenLabs REST/WebSocket endpoint override.",
    "FIRSTWORD_GOOGLE_SPEECH_ENDPOINT": "Google Speech gRPC `host:port` override.",
    "FIRSTWORD_GOOGLE_TTS_ENDPOINT": "Google Text-to-Speech gRPC `host:port` override.",
    "FIRSTWORD_GOOGLE_INSECURE": (
        "Talk to the overridden Google gRPC endpoints without TLS, anonymously "
        "(loopback stand-ins only)."
    ),
    "FIRSTWORD_STT_TIMEOUT": (
        "Seconds after the caller paused within which the cloud recogniser must give a final "
        "transcript, else the call fails over to Whisper."
    ),
    "FIRSTWORD_LLM_FIRST_TOKEN_TIMEOUT": "Seconds to Gemini's first token before failing over.",
    "FIRSTWORD_TTS_FIRST_BYTE_TIMEOUT": (
        "Seconds to a cloud voice's first audio before failing over."
    ),
    "FIRSTWORD_HEDGE_AFTER_LLM": (
        "Seconds without a first token before the local answerer races the cloud model (0: off)."
    ),
    "FIRSTWORD_HEDGE_AFTER_TTS": (
        "Seconds without a first audio byte before the local voice races the cloud voice (0: off)."
    ),
    "FIRSTWORD_BREAKER_COOLDOWN": "Seconds an open circuit breaker waits before one probe.",
    "FIRSTWORD_ACCOUNTS_DIR": "Folder of account files, one YAML per business.",
    "FIRSTWORD_DEFAULT_ACCOUNT": "Account for calls that name none (with a warning).",
    "FIRSTWORD_PIPER_VOICE": "Another Piper voice file (not hash-checked).",
    "FIRSTWORD_EMBEDDING_MODEL": "Another MiniLM embedding model file (not hash-checked).",
    "FIRSTWORD_VERIFY_WEIGHTS": "Check the packaged weights' sha256 when they load.",
    "FIRSTWORD_CACHE_DIR": "Caches (greetings, answers, voices), call recordings, metrics files.",
    "FIRSTWORD_INFERENCE_THREADS": "Threads for Whisper and the voices.",
    "FIRSTWORD_MIN_ENDPOINTING_DELAY": (
        "Seconds after the end of speech at which the turn ends when the turn detector is "
        "sure the caller finished."
    ),
    "FIRSTWORD_MAX_ENDPOINTING_DELAY": (
        "Seconds after the end of speech at which the turn ends when the turn detector is "
        "unsure the caller finished."
    ),
    "FIRSTWORD_SPECULATE_AFTER": "Seconds of silence before the speculative transcription.",
    "FIRSTWORD_AGENT_NAME": "Empty: automatic dispatch to every room; a name: explicit dispatch.",
    "FIRSTWORD_WEB_PORT": "Port of the web app (`python -m agent.web`).",
    "FIRSTWORD_WEB_TOKENS_PER_MINUTE": "Tokens per client address per minute after the burst.",
    "FIRSTWORD_CRASH_RECOVERY": "Pick up calls whose worker died (needs `REDIS_URL`).",
    "FIRSTWORD_RECOVERY_LEASE_MS": (
        "A call's lease in Redis, ms; a call not renewed this long is picked up again."
    ),
    "FIRSTWORD_RESUME_LINE": "What a picked-up call hears first (cached per voice).",
    "FIRSTWORD_UNANSWERED_SWEEP": "Seconds between sweeps of the server's rooms.",
    "FIRSTWORD_RESPONSE_CACHE_TTL": "Seconds a cached cloud answer is used.",
    "FIRSTWORD_RESPONSE_CACHE_SIMILARITY": (
        "MiniLM cosine a question needs to an earlier one (besides the content-word check)."
    ),
    "FIRSTWORD_CLOUD_VOICE_CACHE_MB": "Memory for the cloud voices' audio per worker process.",
    "FIRSTWORD_SHARED_AUDIO_TTL": "Seconds audio is kept in Redis.",
    "FIRSTWORD_SHARED_AUDIO_MAX_KB": "Largest audio blob kept in Redis, KB.",
    "FIRSTWORD_REDIS_TIMEOUT": "Seconds any Redis operation of the caches may take.",
    "FIRSTWORD_REDIS_RETRY_AFTER": (
        "Seconds Redis is left alone after a failure (the caches use memory and disk)."
    ),
    "FIRSTWORD_INPUT_AGC": (
        "WebRTC's automatic gain control on the caller's audio (off by default, see "
        "`FIRSTWORD_INPUT_SAMPLE_RATE`)."
    ),
    "FIRSTWORD_LOG_LEVEL": "Log level.",
}

HEADER = """\
# Configuration

<!-- Generated by scripts/settings_doc.py from agent.settings.Settings; do not edit by hand.
     Regenerate: .venv/bin/python scripts/settings_doc.py > docs/configuration.md -->

Every setting is read from the environment and from an optional `.env` at the project root
(see `config/.env.example`). Secrets (`SecretStr`) are never logged or shown in a repr.
Accounts (one YAML per business) are configured in `config/accounts/`: see the
[README](../README.md#adding-an-account).

| variable | type | default | description |
|---|---|---|---|
"""


def env_name(name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from."""
    alias = field.validation_alias
    return alias if isinstance(alias, str) else name.upper()


def type_text(annotation: Any) -> str:
    """A reader's name for a field's type: `float`, `one of a, b`, `secret`, `path`."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(type_text(arg) for arg in args) + " (optional)"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def bounds_text(field: FieldInfo) -> str:
    """The field's numeric bounds and length limits, as `≥ 0, ≤ 2`."""
    parts = []
    for item in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length} character(s)")
    return ", ".join(parts)


def default_text(field: FieldInfo) -> str:
    """The default as a reader would type it; paths relative to the project root."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Path):
        try:
            value = value.relative_to(PROJECT_ROOT)
        except ValueError:
            pass
    if isinstance(value, bool):
        value = str(value).lower()
    text = str(value)
    return f"`{text}`" if text else "empty"


def field_comments() -> dict[str, str]:
    """The comment block right above each field of `Settings`, joined into one line."""
    lines, _ = inspect.getsourcelines(Settings)
    source = textwrap.dedent("".join(lines))
    source_lines = source.splitlines()
    class_def = ast.parse(source).body[0]
    assert isinstance(class_def, ast.ClassDef)
    comments: dict[str, str] = {}
    for node in class_def.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        block: list[str] = []
        index = node.lineno - 2  # the line above the field, 0-based
        while index >= 0 and source_lines[index].strip().startswith("#"):
            block.insert(0, source_lines[index].strip().lstrip("#").strip())
            index -= 1
        if block:
            comments[node.target.id] = " ".join(block)
    return comments


def cell(text: str) -> str:
    """Text fit for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, type, default, description) for every setting, in the class's order."""
    comments = field_comments()
    result = []
    for name, field in Settings.model_fields.items():
        env = env_name(name, field)
        parts = [field.description or NOTES.get(env), comments.get(name)]
        description = " ".join(part for part in parts if part)
        kind = type_text(field.annotation)
        bounds = bounds_text(field)
        if bounds:
            kind = f"{kind}, {bounds}"
        result.append((env, kind, default_text(field), description))
    return result


def undocumented() -> list[str]:
    """Settings with no description from any source (tests/test_docs.py fails on them)."""
    return [env for env, _, _, description in rows() if not description.strip()]


def render() -> str:
    """The whole of docs/configuration.md."""
    body = "".join(
        f"| `{env}` | {cell(kind)} | {cell(default)} | {cell(description)} |\n"
        for env, kind, default, description in rows()
    )
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when docs/configuration.md differs"
    )
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOC_PATH.exists() or DOC_PATH.read_text(encoding="utf-8") != text:
            print(
                f"{DOC_PATH.relative_to(ROOT)} is out of date with agent/settings.py; run: "
                ".venv/bin/python scripts/settings_doc.py > docs/configuration.md",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
