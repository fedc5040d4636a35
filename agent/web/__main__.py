"""`python -m agent.web`: serve the call page and the token endpoint (loopback by default)."""

from __future__ import annotations

import logging

from aiohttp import web

from ..settings import get_settings
from .app import BUNDLE, app_from_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    if not BUNDLE.is_file():
        raise SystemExit(f"{BUNDLE} is missing: build it with scripts/web-build.sh")
    print(f"call page: http://{settings.web_host}:{settings.web_port}/call/<account>")
    web.run_app(
        app_from_settings(settings), host=settings.web_host, port=settings.web_port, print=None
    )


if __name__ == "__main__":
    main()
