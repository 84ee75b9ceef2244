"""Who this hub is: its version, an instance id for this run, the User-Agent its pulls send, its age.

The instance id in the User-Agent lets the HTTP side recognise a request made by this very hub's
own upstream (a camera whose source leads back to the hub, through a relay or a name): it is
refused rather than fanned out to itself.
"""

from __future__ import annotations

import time
import uuid

from camhub import __version__


class HubIdentity:
    def __init__(self, version: str = __version__) -> None:
        self.version = version
        self.instance = uuid.uuid4().hex[:12]
        self.user_agent = f"camhub-hub/{version} (+{self.instance})"
        self.started = time.monotonic()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def is_own_request(self, user_agent: str) -> bool:
        """A request made by this hub's own upstream (it pulled itself through some name)."""
        return f"(+{self.instance})" in user_agent
