"""Who a request comes from: its peer, or, from a trusted proxy, the client its X-Forwarded-For names.

Behind HAProxy (or any reverse proxy) every request's peer is the proxy, so the login throttle would
throttle everyone at once and the viewer lists would show only the proxy. ``CAMHUB_TRUSTED_PROXIES``
names the proxies whose ``X-Forwarded-For`` is believed: the client is the right-most address in it
that is not itself a trusted proxy (each proxy appends the address it got the request from, so
entries left of an untrusted one may be made up). From any other peer the header is ignored (and
counted): anyone can send one. The guard works this out once per request (``client(request)``).

In a cluster the guard also notes which hub a request comes from, when it carries a valid cluster
credential for this hub (``hub_caller(request)``).
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from camhub.hub.ingest.sources import AllowedSources

CLIENT = web.RequestKey("camhub_client", str)
HUB_CALLER = web.RequestKey("camhub_hub_caller", str)
MAX_HOPS = 32


class Clients:
    def __init__(self, trusted_proxies: str = "") -> None:
        self.trusted = AllowedSources.parse(trusted_proxies) if trusted_proxies.strip() else None
        self.ignored = 0  # X-Forwarded-For from peers that are not trusted proxies

    def address(self, request: web.Request) -> str:
        remote = request.remote or ""
        forwarded = request.headers.getall("X-Forwarded-For", [])
        if not forwarded:
            return remote
        if self.trusted is None or not self.trusted.allows(remote):
            self.ignored += 1
            return remote
        hops = [h.strip() for header in forwarded for h in header.split(",")][-MAX_HOPS:]
        client = remote
        for hop in reversed(hops):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                break  # not an address: nothing left of it can be believed
            client = address
            if not self.trusted.allows(address):
                break
        return client


def client(request: web.Request) -> str:
    """The request's client address (set by the guard; the peer for requests it has not seen)."""
    return request.get(CLIENT) or request.remote or ""


def hub_caller(request: web.Request) -> str | None:
    """The hub this request comes from, if it carries a valid cluster credential for this hub."""
    return request.get(HUB_CALLER)
