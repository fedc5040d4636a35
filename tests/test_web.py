"""The web app without a server: token endpoint errors, rate limits, the call page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.accounts import AccountStore
from agent.web.app import BUNDLE, build_app
from agent.web.predispatch import Ticket
from agent.web.ratelimit import RateLimiter
from tests.conftest import ACCOUNTS_DIR


class FakeTickets:
    """Records what would have been dispatched; no LiveKit server involved."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    async def ticket(self, account: str, *, predispatch: bool = True) -> Ticket:
        self.calls.append((account, predispatch))
        return Ticket("ws://x", "jwt", f"call-{account}-1", "web-1", account, 1.0)


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
    reply = await client.post("/api/token", data=b"\xff not json")
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
