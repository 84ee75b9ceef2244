"""Every MQTT topic of the public contract, spelled once (README "What the hub publishes", DESIGN.md).

``prefix`` is ``CAMHUB_TOPIC_PREFIX`` (it may hold slashes); Home Assistant's topics live under its
discovery prefix. A part that publishes or listens asks here for the topic, never builds one itself.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_KINDS = ("announce", "availability", "stats")  # what a node publishes (``set`` it subscribes to)


@dataclass(frozen=True)
class Topics:
    prefix: str = "camhub"
    discovery_prefix: str = "homeassistant"

    # ---- the hub's own -------------------------------------------------------------------------
    @property
    def hub_availability(self) -> str:
        return f"{self.prefix}/hub/availability"

    @property
    def hub_state(self) -> str:
        return f"{self.prefix}/hub/state"

    @property
    def recordings(self) -> str:
        return f"{self.prefix}/hub/recordings"

    def camera(self, camera_id: str, leaf: str) -> str:
        """``<prefix>/hub/cameras/<id>/<leaf>``: ``state``, ``events``, ``motion``, ``snapshot``."""
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
        """``<prefix>/nodes/<id>/<leaf>``: ``announce``, ``availability``, ``stats``, ``set``."""
        return f"{self.prefix}/nodes/{node_id}/{leaf}"

    def nodes(self, kind: str) -> str:
        """The subscription for every node's ``kind`` (``announce``, ``availability``, ``stats``)."""
        return self.node("+", kind)

    def parse_node(self, topic: str) -> tuple[str, str] | None:
        """``(node id, kind)`` of a ``<prefix>/nodes/<id>/<kind>`` topic, else None."""
        head, sep, rest = topic.partition(f"{self.prefix}/nodes/")
        if head or not sep:
            return None
        node_id, sep, kind = rest.partition("/")
        return (node_id, kind) if sep and "/" not in kind else None

    # ---- Home Assistant ------------------------------------------------------------------------
    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and will (``online``/``offline``)."""
        return f"{self.discovery_prefix}/status"

    def ha_config(self, component: str, unique_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{unique_id}/config"
