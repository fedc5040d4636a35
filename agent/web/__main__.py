"""`python -m agent.web`: serve the call page, the token endpoint and the front desk (loopback by
default; the desk only when FIRSTWORD_DESK_SECRET is set)."""

from __future__ import annotations

import logging

from aiohttp import web

from ..preflight import PreflightError, check_secrets
from ..settings import get_settings
from .app import BUNDLE, app_from_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    try:
        check_secrets(settings)
    except PreflightError as exc:
        raise SystemExit(f"firstword web: {exc}") from exc
    if not BUNDLE.is_file():
        raise SystemExit(f"{BUNDLE} is missing: build it with scripts/web-build.sh")
    base = f"http://{settings.web_host}:{settings.web_port}"
    print(f"call page: {base}/call/<account>")
    if settings.desk_secret is not None:
        print(f"front desk: {base}/desk?account=<account>")
    else:
        print("front desk: closed (set FIRSTWORD_DESK_SECRET to open it)")
    web.run_app(
        app_from_settings(settings), host=settings.web_host, port=settings.web_port, print=None
    )


if __name__ == "__main__":
    main()
