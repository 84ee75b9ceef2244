"""Rendezvous (highest-random-weight) hashing: which live origin a camera prefers.

Every hub computes the same answer from the same list of live origins, with no coordination: a
camera's preferred owner is the origin with the highest weight ``H(camera, hub)``. When an origin
goes away only its own cameras move (each to its next-highest origin), and when one comes back only
the cameras that prefer it would move (they do not, while their owner lives: ownership is sticky).
Thaler and Ravishankar (1998); RFC 8584 elects EVPN designated forwarders the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(camera_id: str, hub_id: str) -> int:
    digest = hashlib.blake2b(f"{camera_id}\n{hub_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranked(camera_id: str, hubs: Iterable[str]) -> list[str]:
    """``hubs`` from the camera's most preferred to its least (ties, which do not happen, by id)."""
    return sorted(set(hubs), key=lambda hub: (-weight(camera_id, hub), hub))


def preferred(camera_id: str, hubs: Iterable[str]) -> str | None:
    found = ranked(camera_id, hubs)
    return found[0] if found else None
