"""Where the hub may pull from: the allowed networks, the hub's own addresses, source URLs, CAMHUB_SOURCES.

A stream URL (from an announce, which any MQTT client may send, or from the settings) must be plain
http(s) without credentials to an allowed network (``CAMHUB_ALLOWED_SOURCES``, default loopback +
private ranges), and never the hub itself. A URL naming a host by name passes here; the upstream
checks the addresses it resolves to before it connects. A rejection carries a short,
machine-readable reason for the caller to log and count.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from camhub.settings import SettingsError
from camhub_node.config import ID_RULE, is_valid_id

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOWED = "loopback,private"
MAX_URL = 1024
_NAMED: dict[str, tuple[str, ...]] = {
    "loopback": ("127.0.0.0/8", "::1/128"),
    # RFC 1918 and IPv6 unique-local. Not link-local: 169.254.169.254 is the cloud metadata service.
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
    # Boards without DHCP (self-assigned addresses); only when named in CAMHUB_ALLOWED_SOURCES.
    "link-local": ("169.254.0.0/16", "fe80::/10"),
    "any": ("0.0.0.0/0", "::/0"),
}
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_HOST_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")  # inet_aton would read these as addresses


class AnnounceRejected(ValueError):
    """An announce (or source URL) that must change nothing; ``reason`` is short and countable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail  # for people; never contains the URL's secrets


@dataclass(frozen=True)
class AllowedSources:
    """The networks the hub may pull camera streams from."""

    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, spec: str | None) -> AllowedSources:
        """``"loopback,private"``, ``"link-local"``, ``"any"``, or addresses/CIDRs (``"10.1.0.0/16 192.168.4.7"``) mixed
        freely, separated by commas or spaces; empty means the default (loopback + private)."""
        tokens = [t for t in re.split(r"[\s,]+", (spec or "").strip().lower()) if t] or DEFAULT_ALLOWED.split(",")
        networks: list[IPNetwork] = []
        for token in tokens:
            if token in _NAMED:
                networks.extend(ipaddress.ip_network(n) for n in _NAMED[token])
                continue
            try:
                networks.append(ipaddress.ip_network(token, strict=False))
            except ValueError:
                raise SettingsError(
                    f"CAMHUB_ALLOWED_SOURCES: {token!r} is not loopback, private, link-local, any, an address or a "
                    "CIDR network") from None
        return cls(tuple(networks))

    def allows(self, address: str | IPAddress) -> bool:
        """Whether the hub may connect to this address (IPv4-mapped IPv6 counts as its IPv4)."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            elif ip.scope_id:
                ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.is_unspecified or ip.is_multicast:
            return False  # 0.0.0.0 reaches this host; multicast is never a camera
        return any(ip in net for net in self.networks)

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.networks)


class HubAddresses:
    """Whether a source is the hub itself: its HTTP port on an address it listens on.

    Loopback addresses (however spelled: ``localhost``, ``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1``)
    always count; a hub bound to ``0.0.0.0`` or ``::`` listens on every address of this machine,
    which is checked by trying to bind a socket to it (only local addresses can be bound).
    """

    def __init__(self, listen_host: str, port: int) -> None:
        self.port = port
        self._listen = listen_host
        self._wildcard = listen_host in ("", "0.0.0.0", "::")
        self._local: dict[IPAddress, bool] = {}

    def is_self(self, address: str | IPAddress, port: int) -> bool:
        if port != self.port:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
        except ValueError:
            name = str(address).lower().rstrip(".")
            return name == "localhost" or name.endswith(".localhost") or name == self._listen
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback or ip.is_unspecified or str(ip) == self._listen:
            return True
        return self._wildcard and self._is_local(ip)

    def url_is_self(self, url: str) -> bool:
        """For a URL that passed ``check_url``; host names other than loopback ones are checked
        when they are resolved (the upstream's resolver)."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        return self.is_self(parts.hostname or "", port)

    def _is_local(self, ip: IPAddress) -> bool:
        known = self._local.get(ip)
        if known is None:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.bind((str(ip), 0))
                known = True
            except OSError:
                known = False
            if len(self._local) > 1024:  # bounded: announces are untrusted
                self._local.clear()
            self._local[ip] = known
        return known


def check_url(url: object, allowed: AllowedSources, reason: str = "bad_url") -> str:
    """``url`` if it is http(s) without credentials to an allowed address or a plain host name.

    Raises AnnounceRejected(``reason``) for a malformed URL and ``url_not_allowed`` (with the same
    suffix as ``reason``, if any) for an address outside ``allowed``.
    """
    suffix = reason[len("bad_url"):]
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise AnnounceRejected(reason, "not a string of 1-1024 characters")
    if any(not 0x21 <= ord(c) <= 0x7E for c in url):
        raise AnnounceRejected(reason, "spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AnnounceRejected(reason, "unparsable, or a bad port") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise AnnounceRejected(reason, "not http or https")
    if "@" in parts.netloc:
        raise AnnounceRejected(reason, "credentials in the URL")
    host = parts.hostname
    if not host or port == 0:
        raise AnnounceRejected(reason, "no host, or port 0")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        if (len(host) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels)
                or _NUMERIC_HOST_RE.fullmatch(labels[-1])):
            raise AnnounceRejected(reason, "not an IP address or a valid host name")
    elif not allowed.allows(address):
        raise AnnounceRejected("url_not_allowed" + suffix,
                               f"{host} is outside CAMHUB_ALLOWED_SOURCES ({allowed})")
    return url


def parse_static_sources(value: str | None, allowed: AllowedSources) -> dict[str, str]:
    """``CAMHUB_SOURCES`` (``"door=http://10.0.0.7:81/stream, yard=http://..."``) as ``{id: url}``.

    Entries are separated by commas or white space (a comma inside a URL must be written %2C);
    each must have a valid id and pass the same URL checks as an announce. A bad entry is a
    settings error naming the entry's id and what is wrong (never the URL, which may hold secrets).
    """
    sources: dict[str, str] = {}
    for number, entry in enumerate((e for e in re.split(r"[\s,]+", value or "") if e), start=1):
        camera_id, sep, url = entry.partition("=")
        label = camera_id if is_valid_id(camera_id) else f"entry {number}"
        if not sep or not url:
            raise SettingsError(f"CAMHUB_SOURCES: {label}: expected id=http://host:port/path")
        if not is_valid_id(camera_id):
            raise SettingsError(f"CAMHUB_SOURCES: {label}: the id must be {ID_RULE}")
        if camera_id in sources:
            raise SettingsError(f"CAMHUB_SOURCES: {label} is listed twice")
        try:
            sources[camera_id] = check_url(url, allowed)
        except AnnounceRejected as exc:
            hint = " (add its network to CAMHUB_ALLOWED_SOURCES)" if exc.reason == "url_not_allowed" else ""
            raise SettingsError(f"CAMHUB_SOURCES: {label}: {exc.reason}: {exc.detail}{hint}") from None
    return sources
