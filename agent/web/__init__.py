"""The web side of firstword: a call page per account and a token endpoint that pre-dispatches.

`python -m agent.web` serves it (aiohttp, loopback by default). The browser page uses LiveKit's
own JavaScript client, bundled by `scripts/web-build.sh` into `agent/web/static/`.
"""
