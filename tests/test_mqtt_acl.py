"""The mosquitto ACL in docs/mqtt-acl.md, run as written: a node speaks only for itself."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.support.mqtt import Observer
from tests.support.procs import ROOT, HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

USERS = {"camhub-hub": "hub-pw-1", "front-door": "door-pw-2", "yard": "yard-pw-3", "homeassistant": "ha-pw-4"}


def documented_acl() -> str:
    text = (ROOT / "docs" / "mqtt-acl.md").read_text()
    blocks = re.findall(r"## `/etc/mosquitto/camhub.acl`\n```\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_a_node_cannot_clear_or_spoof_another_nodes_topics(tmp_path: Path) -> None:
    broker = Mosquitto(users=USERS, acl=documented_acl())
    node = SimNode("front-door", broker.port, fps=5, frame_size="QQVGA",
                   env={"CAMHUB_MQTT_USER": "front-door", "CAMHUB_MQTT_PASSWORD": USERS["front-door"]})
    hub = HubProcess(broker.port, tmp_path, env={"CAMHUB_MQTT_USER": "camhub-hub",
                                                 "CAMHUB_MQTT_PASSWORD": USERS["camhub-hub"]})
    attacker = Observer(broker.port, ["camhub/#"], username="yard", password=USERS["yard"])
    try:
        hub.wait_ready()
        wait_until(lambda: get_json(hub.url + "/api/cameras/front-door")["state"] == "streaming",
                   timeout=30, what="the node discovered through the ACL")
        # another board's credentials: clearing, spoofing offline, posing as the hub all go nowhere
        attacker.publish("camhub/nodes/front-door/announce", b"", retain=True)
        attacker.publish("camhub/nodes/front-door/availability", "offline", retain=True)
        attacker.publish("camhub/hub/cameras/front-door/state", json.dumps({"state": "offline"}), retain=True)
        attacker.publish("camhub/hub/ha_integration", "on", retain=True)  # would take HA's camera entities away
        attacker.publish("camhub/nodes/yard/announce", json.dumps(  # its own topic: allowed
            {"id": "yard", "stream_url": "http://127.0.0.1:9/stream"}), retain=True)
        wait_until(lambda: "yard" in {c["id"] for c in get_json(hub.url + "/api/cameras")}, what="yard's own")
        time.sleep(1.0)
        home = Observer(broker.port, ["camhub/#"], username="homeassistant", password=USERS["homeassistant"])
        try:
            announce = home.wait_for("camhub/nodes/front-door/announce")
            assert json.loads(announce.payload)["id"] == "front-door"
            assert home.wait_for("camhub/nodes/front-door/availability").text == "online"
            state = home.wait_for("camhub/hub/cameras/front-door/state")
            assert state.json()["state"] == "streaming"  # the hub's, not the attacker's
            assert get_json(hub.url + "/api/hub")["home_assistant"]["integration"] is False
            # Home Assistant's camhub integration may say it is set up (the hub then drops its MQTT camera entity).
            home.publish("camhub/hub/ha_integration", "on", retain=True)
            wait_until(lambda: get_json(hub.url + "/api/hub")["home_assistant"]["integration"], 10,
                       what="the hub hearing Home Assistant's integration flag")
        finally:
            home.close()
        assert get_json(hub.url + "/api/cameras/front-door")["state"] == "streaming"
        assert get_json(node.url + "/status")["mqtt"]["reasserts"] == 0  # the broker stopped them first
    finally:
        attacker.close()
        hub.stop()
        node.stop()
        broker.stop()
