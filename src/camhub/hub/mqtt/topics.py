"""Every MQTT topic of the public contract, spelled once (README "What the hub publishes", DESIGN.md).

``prefix`` is ``CAMHUB_TOPIC_PREFIX`` (it may hold slashes); Home Assistant's topics live under its
discovery prefix. A part that publishes or listens asks here for the topic, never builds one itself.

A hub in a cluster (``CAMHUB_ROLE`` origin or edge) has a ``hub_id``: its own topics (availability,
state, recordings) are then ``<prefix>/hubs/<hub_id>/...``, one writer each, beside its ``info``; a
camera's topics keep their names (``<prefix>/hub/cameras/<id>/...``) and are written by the camera's
owner only, claimed on ``<prefix>/cameras/<id>/owner``. A single hub (``hub_id`` None) keeps
``<prefix>/hub/...``.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_KINDS = ("announce", "availability", "stats")  # what a node publishes (``set`` it subscribes to)


@dataclass(frozen=True)
class Topics:
    prefix: str = "camhub"
    discovery_prefix: str = "homeassistant"
    hub_id: str | None = None  # in a cluster: this hub's id (its own topics are per hub)

    # ---- the hub's own -------------------------------------------------------------------------
    def _own(self, leaf: str) -> str:
        return f"{self.prefix}/hub/{leaf}" if self.hub_id is None else self.member(self.hub_id, leaf)

    @property
    def hub_availability(self) -> str:
        return self._own("availability")

    @property
    def hub_state(self) -> str:
        return self._own("state")

    @property
    def recordings(self) -> str:
        return self._own("recordings")

    # ---- a cluster's hubs and owners -----------------------------------------------------------
    @property
    def hub_info(self) -> str:
        """Where Home Assistant's camhub integration finds the hub (retained; with discovery). In a cluster
        ``<prefix>/hubs/<hub_id>/ha_info`` (the members' own ``info`` is another payload)."""
        return f"{self.prefix}/hub/info" if self.hub_id is None else self.member(self.hub_id, "ha_info")

    @property
    def ha_integration(self) -> str:
        """Written by Home Assistant's camhub integration, not the hub: ``on`` while it is set up (per hub)."""
        return self._own("ha_integration")

    def member(self, hub_id: str, leaf: str) -> str:
        """``<prefix>/hubs/<hub_id>/<leaf>``: ``availability``, ``info``, ``beat``, ``state``, ``recordings``."""
        return f"{self.prefix}/hubs/{hub_id}/{leaf}"

    def members(self, leaf: str) -> str:
        """The subscription for every hub's ``leaf``."""
        return self.member("+", leaf)

    def parse_member(self, topic: str) -> tuple[str, str] | None:
        """``(hub id, leaf)`` of a ``<prefix>/hubs/<id>/<leaf>`` topic, else None."""
        return _two_levels(topic, f"{self.prefix}/hubs/")

    def camera_owner(self, camera_id: str) -> str:
        """``<prefix>/cameras/<id>/owner``: ``{"hub","url","since"}``, retained, written by the owner."""
        return f"{self.prefix}/cameras/{camera_id}/owner"

    @property
    def owners(self) -> str:
        return self.camera_owner("+")

    def parse_owner(self, topic: str) -> str | None:
        """The camera id of a ``<prefix>/cameras/<id>/owner`` topic, else None."""
        parsed = _two_levels(topic, f"{self.prefix}/cameras/")
        return parsed[0] if parsed is not None and parsed[1] == "owner" else None

    @property
    def camera_states(self) -> str:
        """The subscription for every camera's state (what other hubs show of a camera they do not own)."""
        return self.camera("+", "state")

    def parse_camera(self, topic: str) -> tuple[str, str] | None:
        """``(camera id, leaf)`` of a ``<prefix>/hub/cameras/<id>/<leaf>`` topic, else None."""
        return _two_levels(topic, f"{self.prefix}/hub/cameras/")

    def camera(self, camera_id: str, leaf: str) -> str:
        """``<prefix>/hub/cameras/<id>/<leaf>``: ``state``, ``events``, ``motion``, ``snapshot``, and ``set``
        (settings changes to the hub, which queues a battery camera's for its next wake)."""
        return f"{self.prefix}/hub/cameras/{camera_id}/{leaf}"

    def camera_state(self, camera_id: str) -> str:
        return self.camera(camera_id, "state")

    def camera_events(self, camera_id: str) -> str:
        return self.camera(camera_id, "events")

    def camera_motion(self, camera_id: str) -> str:
        return self.camera(camera_id, "motion")

    def camera_snapshot(self, camera_id: str) -> str:
        return self.camera(camera_id, "snapshot")

    # ---- the nodes' ----------------------------------------------------------------------------
    def node(self, node_id: str, leaf: str) -> str:
        """``<prefix>/nodes/<id>/<leaf>``: ``announce``, ``availability``, ``stats``, ``set``, ``snapshot``."""
        return f"{self.prefix}/nodes/{node_id}/{leaf}"

    def nodes(self, kind: str) -> str:
        """The subscription for every node's ``kind`` (``announce``, ``availability``, ``stats``, ``snapshot``,
        ``set``)."""
        return self.node("+", kind)

    def parse_node(self, topic: str) -> tuple[str, str] | None:
        """``(node id, kind)`` of a ``<prefix>/nodes/<id>/<kind>`` topic, else None."""
        return _two_levels(topic, f"{self.prefix}/nodes/")

    # ---- Home Assistant ------------------------------------------------------------------------
    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and will (``online``/``offline``)."""
        return f"{self.discovery_prefix}/status"

    def ha_config(self, component: str, unique_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{unique_id}/config"


def _two_levels(topic: str, head: str) -> tuple[str, str] | None:
    """``(id, leaf)`` of ``<head><id>/<leaf>`` (one level each), else None."""
    before, sep, rest = topic.partition(head)
    if before or not sep:
        return None
    first, sep, leaf = rest.partition("/")
    return (first, leaf) if sep and "/" not in leaf else None
