"""The cluster's one secret, and what is derived from it: view tokens valid on every hub, and the
credential one hub pulls from another with.

Nothing sends the secret itself. View tokens are keyed with ``HMAC(secret, "view-tokens")``, the same
on every hub, so a token handed out by one hub opens that camera on any. A hub-to-hub request carries
``Authorization: Bearer <caller>.<target>.<mac>`` with ``mac = HMAC(secret', caller + target)``: the
target checks it is meant for itself, so a credential sent to a false member (an address someone
published on MQTT) opens nothing on any real hub.
"""

from __future__ import annotations

import hashlib
import hmac

from camhub_node.config import is_valid_id

SCHEME = "Bearer"


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), b"camhub-cluster/" + purpose.encode(), hashlib.sha256).digest()


class ClusterKey:
    def __init__(self, secret: str, hub_id: str) -> None:
        self.hub_id = hub_id
        self.view_token_key = _derive(secret, "view-tokens")
        self._pull_key = _derive(secret, "hub-to-hub")

    def _mac(self, caller: str, target: str) -> str:
        return hmac.new(self._pull_key, f"{caller}\n{target}".encode(), hashlib.sha256).hexdigest()[:40]

    def headers(self, target: str) -> dict[str, str]:
        """The request headers of a pull (or any request) from this hub to hub ``target``."""
        return {"Authorization": f"{SCHEME} {self.hub_id}.{target}.{self._mac(self.hub_id, target)}"}

    def caller(self, authorization: str | None) -> str | None:
        """The hub a request with this ``Authorization`` comes from, if it is a valid credential for this hub."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != SCHEME.lower() or len(value) > 200:
            return None
        caller, _, rest = value.strip().partition(".")
        target, _, mac = rest.partition(".")
        if not is_valid_id(caller) or target != self.hub_id:
            return None
        return caller if hmac.compare_digest(mac.encode("utf-8", "replace"), self._mac(caller, target).encode()) \
            else None
