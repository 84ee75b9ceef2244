"""Which ``Host`` names the hub answers to (against DNS rebinding).

A web page on another site can point its own domain at the hub's address (DNS rebinding) and then
read the API and the streams as if they were its own: the browser still sends the attacker's name
in ``Host``. So the hub answers only names that are its own: loopback names, IP addresses (the
address a request arrived on, or the one it listens on), this machine's host name (also as
``<name>.local``), and ``CAMHUB_ALLOWED_HOSTS`` (names, ``*.example.org`` for a domain's hosts, or
``*`` to switch the check off). A request without ``Host`` (HTTP/1.0) passes: no browser sends one.
"""

from __future__ import annotations

import ipaddress
import re
import socket

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def _name_and_port(host: str) -> str:
    """``Host`` without its port, lower-case, without a trailing dot; IPv6 without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class HostCheck:
    """``allowed(host_header, local_address)``; counts what it refuses in ``refused``."""

    def __init__(self, listen_host: str, allowed_hosts: str = "") -> None:
        names = {t.lower().rstrip(".") for t in re.split(r"[\s,]+", allowed_hosts or "") if t}
        self.any = "*" in names
        self._suffixes = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.org"
        machine = socket.gethostname().lower().rstrip(".")
        self._names = {n for n in names if not n.startswith("*")} | _LOOPBACK_NAMES
        if machine:
            self._names |= {machine, machine.split(".")[0], machine.split(".")[0] + ".local"}
        self._listen = _name_and_port(listen_host)
        self.refused = 0

    def allowed(self, host_header: str | None, local_address: str | None = None) -> bool:
        if self.any or not host_header:
            return True
        name = _name_and_port(host_header)
        if name in self._names or name.endswith(".localhost") or any(name.endswith(s) for s in self._suffixes):
            return True
        try:
            address = ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            self.refused += 1
            return False
        # An address cannot be rebound: a page at http://<address>/ is the hub's own page.
        if address.is_loopback or name == self._listen or self._is_local(address, local_address):
            return True
        self.refused += 1
        return False

    @staticmethod
    def _is_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address, local_address: str | None) -> bool:
        if not local_address:
            return False
        try:
            local = ipaddress.ip_address(local_address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(local, ipaddress.IPv6Address) and local.ipv4_mapped is not None:
            local = local.ipv4_mapped
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address == local
