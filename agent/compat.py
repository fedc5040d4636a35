"""Every reach into a framework's private attributes, in one place, each behind one function.

livekit-agents offers no public way to do these things; each function says what it needs and
why. `tests/test_observability.py` checks them on the pinned version, so a framework change
fails there, loudly, instead of in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from livekit.agents import AgentServer

# --- livekit-agents: AgentServer's health server and its connection ----------------------


class AgentServerWithRoutes(AgentServer):
    """An `AgentServer` whose own health server (FIRSTWORD_HTTP_PORT) also serves `routes`.

    The framework builds its aiohttp app (`GET /`, `GET /worker`) inside `run()` and starts it
    before any public hook fires (`worker_started` comes after the router is frozen), so routes
    cannot be added from outside. It keeps that server as `self._http_server`; this class
    adds the routes the moment `run()` assigns it, before it starts. One port for every probe
    instead of a second server of our own.
    """

    def __init__(self, *args: Any, routes: list[web.RouteDef] | None = None, **kwargs: Any):
        self.__routes = list(routes or [])
        super().__init__(*args, **kwargs)

    @property
    def _http_server(self) -> Any:
        return self.__dict__.get("_firstword_http_server")

    @_http_server.setter
    def _http_server(self, value: Any) -> None:
        if value is not None and self.__routes:
            value.app.add_routes(self.__routes)
        self.__dict__["_firstword_http_server"] = value


@dataclass(frozen=True)
class ServerConnection:
    """The worker's connection to the LiveKit server, as its own health check sees it."""

    registered: bool
    connecting: bool
    failed: bool


def server_connection(server: AgentServer) -> ServerConnection:
    """Registered (and not reconnecting), reconnecting, or given up.

    `AgentServer.id` is public but keeps the last id through a reconnect; the framework's
    own `GET /` reads `_connection_failed`, and `_connecting` is set while it (re)connects.
    """
    connecting = bool(server._connecting)
    failed = bool(server._connection_failed)
    registered = server.id != "unregistered" and not connecting and not failed
    return ServerConnection(registered=registered, connecting=connecting, failed=failed)
