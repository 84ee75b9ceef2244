"""Viewer and API credentials: HTTP Basic for people, per-camera view tokens for players.

A view token is an HMAC of the camera id under a key kept in the state directory: it lets a player
(VLC, Home Assistant) open that one camera's stream and snapshot, and nothing else, and it never
reveals the password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def load_key(state_dir: Path) -> bytes:
    """The token key, created (mode 0600) on first use."""
    path = state_dir / "token.key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


class Auth:
    """Decides whether a request may proceed."""

    def __init__(self, required: bool, user: str, password: str | None, key: bytes) -> None:
        self.required = required
        self._user = user.encode()
        self._password = (password or "").encode()
        self._key = key
        self.failures = 0

    def view_token(self, camera_id: str) -> str:
        return hmac.new(self._key, b"view:" + camera_id.encode(), hashlib.sha256).hexdigest()[:32]

    def basic_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # compare both even when the first differs, so timing says nothing about which was wrong
        return hmac.compare_digest(user, self._user) & hmac.compare_digest(password, self._password)

    def allows(self, authorization: str | None, camera_id: str | None = None, token: str | None = None) -> bool:
        if not self.required:
            return True
        if self.basic_ok(authorization):
            return True
        if camera_id is not None and token and hmac.compare_digest(token, self.view_token(camera_id)):
            return True
        self.failures += 1
        return False
