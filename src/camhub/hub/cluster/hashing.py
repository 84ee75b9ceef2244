"""Rendezvous (highest-random-weight) hashing: which live origin a camera prefers, and (redirect mode)
which edge takes a camera's next viewer.

Every hub computes the same answer from the same list of live origins, with no coordination: a
camera's preferred owner is the origin with the highest weight ``H(camera, hub)``. When an origin
goes away only its own cameras move (each to its next-highest origin), and when one comes back only
the cameras that prefer it would move (they do not, while their owner lives: ownership is sticky).
Thaler and Ravishankar (1998); RFC 8584 elects EVPN designated forwarders the same way.

A hub that redirects viewers (``CAMHUB_STREAM_REDIRECT``) ranks the live edges the same way per camera
and bounds the load (``bounded``): a camera's viewers go to its first edge until that edge holds more
than ``percent`` % of the mean, then spill to the next, so a hot camera uses several edges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def weight(camera_id: str, hub_id: str) -> int:
    digest = hashlib.blake2b(f"{camera_id}\n{hub_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranked(camera_id: str, hubs: Iterable[str]) -> list[str]:
    """``hubs`` from the camera's most preferred to its least (ties, which do not happen, by id)."""
    return sorted(set(hubs), key=lambda hub: (-weight(camera_id, hub), hub))


def preferred(camera_id: str, hubs: Iterable[str]) -> str | None:
    found = ranked(camera_id, hubs)
    return found[0] if found else None


def bound(total: int, hubs: int, percent: int) -> int:
    """Bounded load (Mirrokni, Thorup, Zadimoghaddam, SODA 2018; HAProxy's ``hash-balance-factor``): with
    ``total`` connections on ``hubs`` hubs, a hub may take one more while it has fewer than
    ``ceil(percent / 100 × (total + 1) / hubs)`` (the new one counted)."""
    return -(-percent * (total + 1) // (100 * max(1, hubs)))


def bounded(camera_id: str, loads: Mapping[str, int], percent: int) -> str | None:
    """The hub of ``loads`` (hub id -> its connections now) that takes a new connection of ``camera_id``:
    the first in the camera's rendezvous order below the bound. With ``percent`` >= 100 some hub always
    is (they cannot all hold the mean or more), so None only when there is no hub."""
    limit = bound(sum(loads.values()), len(loads), percent)
    return next((hub for hub in ranked(camera_id, loads) if loads[hub] < limit), None)
