"""The aiohttp application: the call page, its script bundle, and the token endpoint.

- `GET /call/<account>`: the call page of a known account (404 names an unknown one).
- `/desk` and `/api/desk/...`: the front desk for the business's staff (`desk.py`), closed
  while no staff login exists (`python -m agent.web add-staff`).
- `POST /api/token` with `{"account": "<id>"}`: creates the room with the agent dispatched
  (see `predispatch.py`) and returns the LiveKit URL, token and room. Unknown accounts get 404,
  malformed bodies 400, a body that is not `application/json` 415, clients over their rate
  429 with `Retry-After` (the client: the socket's address, or behind a trusted proxy the
  address it forwarded; `clients.py`).
- `GET /healthz`: 200 `{"ok": true, "accounts": N}` while the app answers and its accounts
  can be read (a broken edit keeps the last good ones); 503 naming the problem otherwise,
  for a load balancer or a Kubernetes probe. It asks nothing of the LiveKit server: an outage
  there is the server's alert, and taking every web replica out of rotation for it would only
  turn the pages' clear error into a dead address.
- Every response carries the security headers of `headers.py`.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Protocol

from aiohttp import web

from ..accounts import AccountStore
from ..settings import Settings
from . import headers
from .clients import NO_PROXIES, PROXIES_KEY, TrustedProxies, client_address
from .desk import Desk, desk_from_settings
from .open_calls import OpenCalls
from .predispatch import Predispatcher, Ticket
from .ratelimit import RateLimiter

logger = logging.getLogger("firstword.web")

STATIC_DIR = Path(__file__).parent / "static"
BUNDLE = STATIC_DIR / "call.js"


class TicketSource(Protocol):
    async def live_rooms(self, names: list[str]) -> set[str]: ...

    async def ticket(
        self, account: str, *, predispatch: bool = True, typed_text: bool = False
    ) -> Ticket: ...


STORE_KEY = web.AppKey("accounts", AccountStore)
TICKETS_KEY = web.AppKey("tickets", TicketSource)
LIMITER_KEY = web.AppKey("limiter", RateLimiter)
OPEN_CALLS_KEY = web.AppKey("open_calls", OpenCalls)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def call_page(request: web.Request) -> web.StreamResponse:
    account_id = request.match_info["account"]
    registry = await request.app[STORE_KEY].current()
    account = registry.accounts.get(account_id)
    if account is None:
        return _error(404, f"unknown account {account_id!r}")
    if not BUNDLE.is_file():
        return _error(503, "the call page's script is not built: run scripts/web-build.sh")
    page = (STATIC_DIR / "call.html").read_text(encoding="utf-8")
    page = page.replace("{{ACCOUNT_ID}}", html.escape(account.id)).replace(
        "{{BUSINESS_NAME}}", html.escape(account.business_name)
    )
    return web.Response(text=page, content_type="text/html")


async def token(request: web.Request) -> web.Response:
    # JSON only: a cross-site form or `no-cors` fetch can send text/plain or form data without
    # the browser asking first, but not application/json, so another site cannot make its
    # visitors mint rooms on this one (the app answers no CORS preflight).
    if request.content_type != "application/json":
        return _error(415, 'send Content-Type: application/json and {"account": "<account id>"}')
    client = client_address(request, request.app[PROXIES_KEY])
    wait = request.app[LIMITER_KEY].allow(client)
    if wait > 0:
        return _error(
            429, "too many token requests; try again shortly", **{"Retry-After": f"{wait:.0f}"}
        )
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, 'the body must be JSON: {"account": "<account id>"}')
    account_id = body.get("account") if isinstance(body, dict) else None
    if not isinstance(account_id, str) or not account_id:
        return _error(400, "field 'account' (a string) is required")
    registry = await request.app[STORE_KEY].current()
    if account_id not in registry.accounts:
        return _error(404, f"unknown account {account_id!r}")
    open_calls = request.app[OPEN_CALLS_KEY]
    if not await open_calls.admit(client):
        return _error(
            429,
            "you already have the most calls open that one caller may; hang up one first",
            **{"Retry-After": "10"},
        )
    predispatch = body.get("predispatch", True) is not False
    try:
        ticket = await request.app[TICKETS_KEY].ticket(
            account_id,
            predispatch=predispatch,
            typed_text=registry.accounts[account_id].typed_text,
        )
    except Exception:
        logger.exception("could not create the room for account %s", account_id)
        return _error(502, "the LiveKit server did not accept the call; try again")
    open_calls.issued(client, ticket.room)
    logger.info(
        "token issued",
        extra={"account": account_id, "room": ticket.room, "dispatch_ms": ticket.dispatch_ms},
    )
    return web.json_response(ticket.to_json())


async def healthz(request: web.Request) -> web.Response:
    try:
        registry = await request.app[STORE_KEY].current()
    except Exception as exc:  # a probe reports, it never raises
        logger.warning("healthz: the accounts did not load: %s", exc)
        return web.json_response({"ok": False, "problem": f"accounts: {exc}"}, status=503)
    return web.json_response({"ok": True, "accounts": len(registry.accounts)})


def build_app(
    store: AccountStore,
    tickets: TicketSource,
    limiter: RateLimiter,
    desk: Desk | None = None,
    *,
    livekit_url: str = "ws://127.0.0.1:7880",
    trusted_proxies: TrustedProxies = NO_PROXIES,
    max_calls_per_client: int = 0,
) -> web.Application:
    """`livekit_url`: the LiveKit address browsers connect to (the pages' CSP allows it)."""
    app = web.Application()
    app[STORE_KEY] = store
    app[TICKETS_KEY] = tickets
    app[LIMITER_KEY] = limiter
    app[PROXIES_KEY] = trusted_proxies
    app[OPEN_CALLS_KEY] = OpenCalls(max_calls_per_client, tickets.live_rooms)
    headers.install(app, livekit_url)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/call/{account}", call_page)
    app.router.add_post("/api/token", token)
    if desk is not None:
        desk.add_routes(app)
    app.router.add_static("/static/", STATIC_DIR)
    return app


def app_from_settings(settings: Settings) -> web.Application:
    """The app as `python -m agent.web` serves it."""
    store = AccountStore(
        settings.accounts_dir, settings.default_account, ttl_seconds=settings.account_ttl_seconds
    )
    tickets = Predispatcher(settings)
    limiter = RateLimiter(settings.web_token_burst, settings.web_tokens_per_minute)
    desk, directory = desk_from_settings(settings, store)
    app = build_app(
        store,
        tickets,
        limiter,
        desk,
        livekit_url=settings.livekit_url,
        trusted_proxies=TrustedProxies.parse(settings.web_trusted_proxies),
        max_calls_per_client=settings.web_max_calls_per_client,
    )

    async def _close(_app: web.Application) -> None:
        await tickets.aclose()
        await directory.aclose()

    app.on_cleanup.append(_close)
    return app
