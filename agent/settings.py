"""Process-wide settings, read from the environment and an optional `.env` file.

Every knob a deployer may turn lives here, typed; secrets are `SecretStr` so that they
never end up in a log line or a repr by accident.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Settings of the worker, the caller simulator and the scripts."""

    model_config = SettingsConfigDict(
        env_file=(PROJECT_ROOT / ".env", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # LiveKit connection. The names are LiveKit's own so that `lk` and the SDKs agree.
    livekit_url: str = Field(default="ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    livekit_api_key: str = Field(default="devkey", validation_alias="LIVEKIT_API_KEY")
    livekit_api_secret: SecretStr = Field(
        default=SecretStr("secret"), validation_alias="LIVEKIT_API_SECRET"
    )

    # "local" runs every engine on this machine; "cloud" is reserved for the cloud engines
    # (Google, Gemini, ElevenLabs), which fall back to the local ones.
    providers: Literal["local", "cloud"] = Field(
        default="local", validation_alias="FIRSTWORD_PROVIDERS"
    )

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

    # FAQ answerer: below this cosine similarity the caller is handed to a person.
    faq_min_score: float = Field(
        default=0.5, ge=0, le=1, validation_alias="FIRSTWORD_FAQ_MIN_SCORE"
    )

    # Worker: warm processes kept ready, and how many calls one worker takes before it
    # reports itself full. An empty agent name means automatic dispatch to every room.
    idle_processes: int = Field(default=2, ge=0, validation_alias="FIRSTWORD_IDLE_PROCESSES")
    max_concurrent_calls: int = Field(default=4, ge=1, validation_alias="FIRSTWORD_MAX_CALLS")
    agent_name: str = Field(default="", validation_alias="FIRSTWORD_AGENT_NAME")
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

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="FIRSTWORD_LOG_LEVEL"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
