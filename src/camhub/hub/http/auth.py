"""Viewer and API credentials: HTTP Basic for people, per-camera view tokens for players.

A view token is an HMAC of the camera id under a key kept in the state directory: it lets a player
(VLC, Home Assistant) open that one camera's stream and snapshot, and nothing else, and it never
reveals the password. A view token may also carry an expiry (``<unix seconds>.<mac>``, the expiry in
the HMAC, the same key): a hub that redirects a viewer to an edge (``http/redirect.py``) puts such a
token, good for ``REDIRECT_TOKEN_S``, in the Location, since a browser sends no Authorization header to
another origin. It is checked when a stream opens; the stream then runs as long as it runs.

Wrong credentials are counted (``failures``, by reason) and throttled per client address: after
``FAILURE_LIMIT`` failures within a minute that address gets 429 for the rest of the minute, even
with the right password, so guessing runs at a few tries a minute instead of thousands a second.
The table of addresses is bounded (see ``AttemptThrottle``).

In a cluster the view tokens' key is derived from the cluster secret (the same on every hub), and a
request from another hub carries its own credential (``cluster.credentials``): it passes too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.util.counters import Family
from camhub.hub.util.files import atomic_write
from camhub.hub.util.ratelimit import AttemptThrottle

log = logging.getLogger(__name__)

FAILURE_LIMIT = 20  # failed attempts per client address per FAILURE_WINDOW_S before it is refused
FAILURE_WINDOW_S = 60.0
REDIRECT_TOKEN_S = 60  # an expiring view token's life (a redirect is followed at once); hubs' clocks agree (NTP)
_EXPIRING = re.compile(r"([0-9]{1,12})\.([0-9a-f]{32})")
NO_CREDENTIALS, BAD_CREDENTIALS, BAD_TOKEN, THROTTLED = "no_credentials", "bad_credentials", "bad_token", "throttled"


def load_key(state_dir: Path) -> bytes:
    """The token key, created (mode 0600) on first use."""
    path = state_dir / "token.key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    atomic_write(path, key, mode=0o600)
    return key


class Auth:
    """Decides whether a request may proceed."""

    def __init__(self, required: bool, user: str, password: str | None, key: bytes,
                 cluster: ClusterKey | None = None) -> None:
        self.required = required
        self.cluster = cluster
        self._user = user.encode()
        self._password = (password or "").encode()
        self._key = key
        self.failures: Counter[str] = Counter()  # refused requests, by reason
        self.throttle = AttemptThrottle(FAILURE_LIMIT, FAILURE_WINDOW_S)

    def view_token(self, camera_id: str, expires: int | None = None) -> str:
        """The camera's view token; with ``expires`` (Unix seconds) one valid until then only."""
        message = b"view:" + camera_id.encode() + (b"" if expires is None else b"\n%d" % expires)
        mac = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
        return mac if expires is None else f"{expires}.{mac}"

    def expiring_token(self, camera_id: str, lifetime_s: int = REDIRECT_TOKEN_S) -> str:
        return self.view_token(camera_id, int(time.time()) + lifetime_s)

    @staticmethod
    def is_expiring(token: str | None) -> bool:
        """Whether ``token`` has the form of an expiring view token (a redirect's: never redirected again)."""
        return bool(token) and _EXPIRING.fullmatch(token or "") is not None

    def basic_ok(self, header: str | None) -> bool:
        scheme, _, value = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":  # auth schemes are case-insensitive (RFC 7235)
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # compare both even when the first differs, so timing says nothing about which was wrong
        return hmac.compare_digest(user, self._user) & hmac.compare_digest(password, self._password)

    def token_ok(self, camera_id: str | None, token: str | None) -> bool:
        if camera_id is None or not token:
            return False
        expiring = _EXPIRING.fullmatch(token)
        if expiring is not None:
            expires = int(expiring.group(1))
            if not time.time() < expires <= time.time() + REDIRECT_TOKEN_S + 60:
                return False
            return hmac.compare_digest(token.encode(), self.view_token(camera_id, expires).encode())
        # bytes: compare_digest refuses non-ASCII str, and a query string can hold anything
        return hmac.compare_digest(token.encode("utf-8", "replace"), self.view_token(camera_id).encode())

    def hub_caller(self, authorization: str | None) -> str | None:
        """The hub a request comes from, if it carries a valid cluster credential for this hub."""
        return self.cluster.caller(authorization) if self.cluster is not None and authorization else None

    def check(self, authorization: str | None, camera_id: str | None = None, token: str | None = None,
              client: str = "") -> str | None:
        """None if the request may proceed, else why not (a key of ``failures``)."""
        if not self.required:
            return None
        if self.throttle.blocked(client):
            reason = THROTTLED
        elif self.basic_ok(authorization) or self.token_ok(camera_id, token) or self.hub_caller(authorization):
            return None
        elif authorization is None and not token:
            reason = NO_CREDENTIALS  # a browser's first request: not a failed login
        else:
            reason = BAD_CREDENTIALS if authorization is not None else BAD_TOKEN
            self.throttle.failed(client)
        self.failures[reason] += 1
        return reason

    def counters(self) -> Iterable[Family]:
        yield Family("camhub_auth_failures", "Requests refused for missing or wrong credentials", "reason",
                     dict(self.failures))
