"""Who a web request comes from: the socket's address, or the one a trusted proxy forwarded.

Behind the TLS proxy the deployment docs recommend, every request's socket address is the
proxy's, so a limit keyed on it puts every caller in one bucket. The proxy's
`X-Forwarded-For` is believed only when the request comes from an address listed in
FIRSTWORD_WEB_TRUSTED_PROXIES; anyone else could write any address in that header. Of the
forwarded chain, the client is the right-most address that is not itself a trusted proxy
(each proxy appends the address it saw; entries left of the first untrusted one can be
forged by the client).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """ "10.0.0.5, 10.1.0.0/16": addresses or networks, comma-separated ("" = none)."""
        networks: list[Network] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(
                    f"FIRSTWORD_WEB_TRUSTED_PROXIES: {part!r} is not an address or network"
                ) from exc
        return cls(tuple(networks))

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


NO_PROXIES = TrustedProxies()
# Where the app keeps its trusted proxies (every route that limits a client reads them).
PROXIES_KEY = web.AppKey("trusted_proxies", TrustedProxies)


def client_address(request: web.Request, proxies: TrustedProxies) -> str:
    peer = request.remote or "unknown"
    if not proxies.trusts(peer):
        return peer
    chain = [a.strip() for a in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for address in reversed([a for a in chain if a]):
        if not proxies.trusts(address):
            return address
    return peer


def is_https(request: web.Request, proxies: TrustedProxies) -> bool:
    """Whether the browser reached us over TLS: directly, or through a trusted proxy that says
    so (`X-Forwarded-Proto`); a cookie set then is marked Secure."""
    if request.secure:
        return True
    if not proxies.trusts(request.remote or ""):
        return False
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https"
