"""The web app without a server: token endpoint errors, rate limits, the call page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.accounts import AccountStore
from agent.web.app import BUNDLE, OPEN_CALLS_KEY, build_app
from agent.web.clients import TrustedProxies, client_address
from agent.web.predispatch import Ticket
from agent.web.ratelimit import RateLimiter
from tests.conftest import ACCOUNTS_DIR


class FakeTickets:
    """Records what would have been dispatched; no LiveKit server involved."""

    def __init__(self, *, numbered: bool = False) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.numbered = numbered
        self.live: set[str] = set()  # rooms the fake server still has
        self.asked: list[list[str]] = []

    async def ticket(
        self, account: str, *, predispatch: bool = True, typed_text: bool = False
    ) -> Ticket:
        self.calls.append((account, predispatch))
        room = f"call-{account}-{len(self.calls)}" if self.numbered else f"call-{account}-1"
        return Ticket("ws://x", "jwt", room, "web-1", account, 1.0)

    async def live_rooms(self, names: list[str]) -> set[str]:
        self.asked.append(list(names))
        return {n for n in names if n in self.live}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(burst=2, per_minute=20, clock=clock)  # one token every 3 s
    assert limiter.allow("a") == 0.0
    assert limiter.allow("a") == 0.0
    wait = limiter.allow("a")
    assert wait == pytest.approx(3.0)
    assert limiter.allow("b") == 0.0, "each client has its own bucket"
    clock.now += 3.0
    assert limiter.allow("a") == 0.0
    assert limiter.allow("a") > 0


@pytest.fixture
async def client_and_tickets() -> AsyncIterator[tuple[TestClient, FakeTickets]]:
    tickets = FakeTickets()
    store = AccountStore(ACCOUNTS_DIR, "harbor-dental", ttl_seconds=60)
    app = build_app(store, tickets, RateLimiter(burst=3, per_minute=1))
    async with TestClient(TestServer(app)) as client:
        yield client, tickets


async def test_healthz_answers_while_accounts_are_loaded(
    client_and_tickets: tuple[TestClient, FakeTickets], tmp_path: Path
) -> None:
    client, _ = client_and_tickets
    reply = await client.get("/healthz")
    assert reply.status == 200
    body = await reply.json()
    assert body["ok"] is True and body["accounts"] >= 2
    # The accounts' folder gone unreadable (a volume unmounted): 503, naming it.
    store = AccountStore(ACCOUNTS_DIR, "harbor-dental", ttl_seconds=0)

    def unreadable() -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path))

    store.refresh = unreadable  # type: ignore[assignment,method-assign]
    async with TestClient(TestServer(build_app(store, FakeTickets(), RateLimiter(3, 1)))) as bad:
        reply = await bad.get("/healthz")
        assert reply.status == 503 and "Permission denied" in (await reply.json())["problem"]


async def test_token_for_a_known_account(client_and_tickets: tuple[TestClient, FakeTickets]):
    client, tickets = client_and_tickets
    reply = await client.post("/api/token", json={"account": "bluebird-bikes"})
    assert reply.status == 200
    body = await reply.json()
    assert body["room"] == "call-bluebird-bikes-1" and body["token"] == "jwt"
    assert tickets.calls == [("bluebird-bikes", True)]


async def test_token_refuses_unknown_accounts_and_garbage(
    client_and_tickets: tuple[TestClient, FakeTickets],
) -> None:
    client, tickets = client_and_tickets
    reply = await client.post("/api/token", json={"account": "no-such-shop"})
    assert reply.status == 404
    assert "no-such-shop" in (await reply.json())["error"]
    json_type = {"Content-Type": "application/json"}
    reply = await client.post("/api/token", data=b"\xff not json", headers=json_type)
    assert reply.status == 400
    reply = await client.post("/api/token", json=["harbor-dental"])
    assert reply.status == 400
    assert tickets.calls == [], "nothing is dispatched for a refused request"


async def test_token_endpoint_rate_limits(client_and_tickets: tuple[TestClient, FakeTickets]):
    client, tickets = client_and_tickets
    statuses = [
        (await client.post("/api/token", json={"account": "harbor-dental"})).status
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    reply = await client.post("/api/token", json={"account": "harbor-dental"})
    assert reply.status == 429 and int(reply.headers["Retry-After"]) > 0
    assert len(tickets.calls) == 3


async def test_call_page(client_and_tickets: tuple[TestClient, FakeTickets]) -> None:
    client, _ = client_and_tickets
    assert BUNDLE.is_file(), "scripts/setup.sh builds the call page (scripts/web-build.sh)"
    reply = await client.get("/call/harbor-dental")
    assert reply.status == 200
    page = await reply.text()
    assert "Call Harbor Dental" in page and 'data-account="harbor-dental"' in page
    assert (await client.get("/call/nobody")).status == 404
    script = await client.get("/static/call.js")
    assert script.status == 200 and len(await script.read()) > 10_000


async def test_token_takes_json_only(client_and_tickets: tuple[TestClient, FakeTickets]) -> None:
    # What another site's form or no-cors fetch can send without a preflight.
    client, tickets = client_and_tickets
    body = '{"account": "harbor-dental"}'
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = await client.post("/api/token", data=body, headers={"Content-Type": kind})
        assert reply.status == 415, kind
        assert "application/json" in (await reply.json())["error"]
    assert tickets.calls == []


async def test_behind_a_trusted_proxy_each_caller_has_its_own_limit() -> None:
    store = AccountStore(ACCOUNTS_DIR, "harbor-dental", ttl_seconds=60)
    tickets = FakeTickets()
    proxies = TrustedProxies.parse("127.0.0.1, 10.9.0.0/16")
    app = build_app(store, tickets, RateLimiter(burst=1, per_minute=1), trusted_proxies=proxies)

    async def ask(forwarded: str) -> int:
        headers = {"X-Forwarded-For": forwarded}
        reply = await client.post("/api/token", json={"account": "harbor-dental"}, headers=headers)
        return reply.status

    async with TestClient(TestServer(app)) as client:
        # Two callers behind the proxy: one bucket each, not the proxy's one.
        assert await ask("203.0.113.7") == 200
        assert await ask("198.51.100.4") == 200
        assert await ask("203.0.113.7") == 429
        # A caller who writes its own X-Forwarded-For gains nothing: the right-most address
        # that is not a trusted proxy is the one the proxy saw.
        assert await ask("192.0.2.99, 203.0.113.7") == 429
        assert await ask("192.0.2.98, 203.0.113.7, 10.9.1.1") == 429


def test_an_untrusted_peer_is_keyed_by_its_own_address() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("POST", "/api/token", headers={"X-Forwarded-For": "1.2.3.4"})
    # The mocked peer (no transport address) is not a trusted proxy: the header is ignored.
    assert client_address(request, TrustedProxies.parse("10.0.0.0/8")) != "1.2.3.4"
    with pytest.raises(ValueError, match="FIRSTWORD_WEB_TRUSTED_PROXIES: 'nope'"):
        TrustedProxies.parse("10.0.0.1, nope")


async def test_every_response_carries_the_security_headers(
    client_and_tickets: tuple[TestClient, FakeTickets],
) -> None:
    client, _ = client_and_tickets
    replies = [
        await client.get("/call/harbor-dental"),
        await client.get("/call/nobody"),  # an error too
        await client.get("/static/call.js"),
        await client.post("/api/token", json={"account": "harbor-dental"}),
    ]
    for reply in replies:
        headers = reply.headers
        assert headers["X-Content-Type-Options"] == "nosniff", reply.url
        assert headers["X-Frame-Options"] == "DENY", reply.url
        assert headers["Referrer-Policy"] == "no-referrer", reply.url
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, csp
        # The call page may talk to the LiveKit server (build_app's default address).
        assert "ws://127.0.0.1:7880" in csp, csp


async def test_one_client_holds_at_most_its_cap_of_open_calls() -> None:
    store = AccountStore(ACCOUNTS_DIR, "harbor-dental", ttl_seconds=60)
    tickets = FakeTickets(numbered=True)
    app = build_app(store, tickets, RateLimiter(burst=100, per_minute=100), max_calls_per_client=2)
    async with TestClient(TestServer(app)) as client:

        async def ask() -> tuple[int, str]:
            reply = await client.post("/api/token", json={"account": "harbor-dental"})
            return reply.status, (await reply.json()).get("room") or (await reply.json())["error"]

        first, second = await ask(), await ask()
        assert first[0] == second[0] == 200
        tickets.live = {first[1], second[1]}  # both calls still up on the server
        third = await ask()
        assert third[0] == 429 and "hang up one first" in third[1]
        assert tickets.asked == [[first[1], second[1]]], "the server was asked which are open"
        # The first caller hung up (its room is gone, and was issued long enough ago).
        tickets.live = {second[1]}
        opened = app[OPEN_CALLS_KEY]
        opened._rooms["127.0.0.1"] = [(r, at - 60) for r, at in opened._rooms["127.0.0.1"]]
        assert (await ask())[0] == 200
