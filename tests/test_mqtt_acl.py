"""The mosquitto ACLs of the docs, run as written: each board, hub and Home Assistant writes only its own.

docs/mqtt-acl.md's file for one hub (a streaming board, a battery board) and docs/cluster.md's for a
cluster (two origins and an edge, each hub its own user): the real broker, hubs and firmware.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import urllib.request
from pathlib import Path

from PIL import Image

from camhub.hub.cluster.hashing import preferred
from tests.support.battery import BatteryNode, jpeg_size
from tests.support.cluster import cluster_env, hub_pullers, instance, owned_once
from tests.support.mqtt import Client, Observer
from tests.support.procs import ROOT, HubProcess, Mosquitto, SimNode, free_port
from tests.support.waiting import get_json, wait_until

USERS = {"camhub-hub": "hub-pw-1", "front-door": "door-pw-2", "yard": "yard-pw-3", "homeassistant": "ha-pw-4",
         "owl": "owl-pw-5"}


def documented_acl(doc: str = "mqtt-acl.md") -> str:
    """The ACL file ``docs/<doc>`` shows: its one code block with the boards' lines."""
    text = (ROOT / "docs" / doc).read_text()
    blocks = [block for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
              if "pattern readwrite camhub/nodes/%u/announce" in block]
    assert len(blocks) == 1
    return blocks[0]


def login(user: str, users: dict[str, str] = USERS) -> dict[str, str]:
    return {"CAMHUB_MQTT_USER": user, "CAMHUB_MQTT_PASSWORD": users[user]}


def test_a_node_cannot_clear_or_spoof_another_nodes_topics(tmp_path: Path) -> None:
    broker = Mosquitto(users=USERS, acl=documented_acl())
    node = SimNode("front-door", broker.port, fps=5, frame_size="QQVGA", env=login("front-door"))
    hub = HubProcess(broker.port, tmp_path, env=login("camhub-hub"))
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


def test_a_cluster_s_boards_and_home_assistant_have_the_single_hub_s_lines() -> None:
    """docs/cluster.md says so: a board is the same client with one hub or several, and Home Assistant differs
    only in where each hub's integration flag is."""
    def lines(acl: str, head: str) -> list[str]:
        return [line for line in acl.splitlines() if line.startswith(head)]

    def user(acl: str, name: str) -> list[str]:
        return acl.split(f"\nuser {name}\n")[1].split("\n\n")[0].splitlines()

    single, cluster = documented_acl(), documented_acl("cluster.md")
    assert lines(cluster, "pattern ") == lines(single, "pattern ")
    assert user(cluster, "homeassistant") == [line.replace("camhub/hub/ha_integration", "camhub/hubs/+/ha_integration")
                                              for line in user(single, "homeassistant")]


def small_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def test_a_battery_camera_s_pictures_and_queued_settings_pass_and_no_other_board_can_touch_them(
        tmp_path: Path) -> None:
    """mqtt-acl.md's file with a battery board (owl, woken by its pin): its picture reaches the hub; Home
    Assistant's control queues a setting the hub keeps retained on owl's set (a restarted hub reads it back);
    the next wake applies and clears it. Another board's credentials can neither post a picture as owl nor
    clear what is queued for it. The hub answers Home Assistant's birth with its discovery."""
    with contextlib.ExitStack() as stack:
        broker = Mosquitto(users=USERS, acl=documented_acl())
        stack.callback(broker.stop)
        home = Observer(broker.port, ["camhub/#", "homeassistant/#"], username="homeassistant",
                        password=USERS["homeassistant"])
        stack.callback(home.close)
        attacker = Client(broker.port, username="yard", password=USERS["yard"])
        stack.callback(attacker.close)
        hubs = [HubProcess(broker.port, tmp_path, env=login("camhub-hub"))]
        stack.callback(lambda: hubs[-1].stop())  # the one running (it restarts below)

        def camera() -> dict:
            return get_json(hubs[-1].url + "/api/cameras/owl")

        def snapshot() -> bytes:
            with urllib.request.urlopen(hubs[-1].url + "/cameras/owl/snapshot.jpg", timeout=5) as resp:
                return resp.read()

        hubs[-1].wait_ready()
        owl = BatteryNode("owl", broker.port, interval=600, wake_pin="A0", env=login("owl"))
        stack.callback(owl.stop)
        picture = owl.picture_after(home, 0).payload
        wait_until(lambda: snapshot() == picture, 20, "the battery camera's picture in the hub")
        assert camera()["state"] == "sleeping" and camera()["sleep"]["wakes"] == 1
        home.wait_for("homeassistant/camera/camhub_camera_owl_camera/config")

        attacker.publish("camhub/nodes/owl/snapshot", small_jpeg((64, 48)), retain=True)  # a picture as owl's
        queued_at = time.time()
        home.publish("camhub/hub/cameras/owl/set", json.dumps({"frame_size": "QQVGA"}))  # its control in HA
        home.wait_for("camhub/nodes/owl/set", lambda m: bool(m.payload) and m.json() == {"frame_size": "QQVGA"},
                      after=queued_at)
        attacker.publish("camhub/nodes/owl/set", b"", retain=True)  # would drop the queued change
        time.sleep(0.5)
        assert snapshot() == picture

        hubs[-1].stop()  # a hub that restarts while a change waits learns it back from the broker
        hubs.append(HubProcess(broker.port, tmp_path, env=login("camhub-hub")).wait_ready())
        wait_until(lambda: camera()["sleep"]["pending"] == {"frame_size": "QQVGA"}, 20,
                   "the queued change, read back by the restarted hub")
        assert snapshot() == picture  # the board's, retained; not the other board's

        pressed = time.time()
        owl.press()
        applied = owl.next_wake(home, pressed)
        assert applied.json()["frame_size"] == "QQVGA" and applied.json()["wake"] == "pin"
        wait_until(lambda: jpeg_size(snapshot()) == (160, 120), 20, "the QQVGA picture in the hub")
        wait_until(lambda: camera()["sleep"]["pending"] == {}, 10, "nothing pending any more")
        # owl cleared its set: the broker keeps none for the wakes to come
        newcomer = Observer(broker.port, ["camhub/nodes/owl/#"], username="homeassistant",
                            password=USERS["homeassistant"])
        stack.callback(newcomer.close)
        assert jpeg_size(newcomer.wait_for("camhub/nodes/owl/snapshot").payload) == (160, 120)
        time.sleep(0.5)
        assert [m.payload for m in newcomer.on("camhub/nodes/owl/set") if m.payload] == []

        born = time.time()
        home.publish("homeassistant/status", "online")  # Home Assistant restarted: the hub sends its discovery
        home.wait_for("homeassistant/camera/camhub_camera_owl_camera/config", after=born)


HUBS = {"a": "origin", "b": "origin", "c": "edge"}  # docs/cluster.md's three hubs


def test_a_cluster_s_hubs_each_write_their_own_membership_and_no_board_joins(tmp_path: Path) -> None:
    """docs/cluster.md's file: two origins (a, b) and an edge (c), each hub its own user, and one streaming
    board each origin prefers. The cameras are owned once and streamed, the members listed, Home Assistant's
    flag reaches its hub. One hub's user cannot take another hub offline or out of the cluster, an edge's
    cannot move a camera, and a board's cannot join the cluster as a hub."""
    cameras = {hub: next(c for c in (f"cam{i}" for i in range(1, 50)) if preferred(c, ["a", "b"]) == hub)
               for hub in ("a", "b")}
    users = {**{h: f"{h}-hub-pw" for h in HUBS}, **{c: f"{c}-pw" for c in cameras.values()},
             "homeassistant": USERS["homeassistant"]}

    def members(url: str) -> list[tuple[str, str, bool]]:
        return sorted((m["id"], m["role"], m["online"]) for m in get_json(url + "/api/hub")["cluster"]["members"])

    with contextlib.ExitStack() as stack:
        broker = Mosquitto(users=users, acl=documented_acl("cluster.md"))
        stack.callback(broker.stop)
        procs: list[HubProcess | SimNode] = []
        hubs: dict[str, HubProcess] = {}
        for hub_id, role in HUBS.items():
            hubs[hub_id] = HubProcess(broker.port, tmp_path / hub_id, env={**cluster_env(role, hub_id),
                                                                            **login(hub_id, users)})
            procs.append(hubs[hub_id])
            stack.callback(hubs[hub_id].stop)
        for camera_id in cameras.values():
            procs.append(SimNode(camera_id, broker.port, fps=3, frame_size="QQVGA", env=login(camera_id, users)))
            stack.callback(procs[-1].stop)
        clients: dict[str, Client] = {}
        for user in ("homeassistant", "a", "c", cameras["a"]):
            clients[user] = (Observer(broker.port, ["camhub/#"], username=user, password=users[user])
                             if user == "homeassistant" else Client(broker.port, username=user, password=users[user]))
            stack.callback(clients[user].close)
        home, hub_a, hub_c, board = clients.values()
        urls = [hub.url for hub in hubs.values()]

        for proc in procs:
            proc.wait_ready()
        owners = wait_until(lambda: owned_once(get_json, urls, cameras.values()), 30, "every camera owned once")
        assert owners == {c: h for h, c in cameras.items()}
        for node in procs[len(hubs):]:
            wait_until(lambda node=node: hub_pullers(get_json(node.url + "/status"))
                       == [instance(get_json, hubs[owners[node.node_id]].url)], 15, "each board pulled by its owner")
        expected = [("a", "origin", True), ("b", "origin", True), ("c", "edge", True)]
        for url in urls:
            wait_until(lambda url=url: members(url) == expected, 15, "every hub listing the members")
            wait_until(lambda url=url: all(c["state"] == "streaming" and c["owner"]["hub"] == owners[c["id"]]
                                           for c in get_json(url + "/api/cameras")), 15, "every camera streaming")
        with urllib.request.urlopen(f"{hubs['c'].url}/cameras/{cameras['a']}/snapshot.jpg", timeout=10) as resp:
            assert jpeg_size(resp.read()) == (160, 120)  # the edge serves a camera, pulled from its owner

        hub_a.publish("camhub/hubs/b/availability", "offline", retain=True)  # b taken offline
        hub_a.publish("camhub/hubs/b/info", b"", retain=True)  # b taken out of the cluster
        hub_c.publish(f"camhub/cameras/{cameras['a']}/owner", json.dumps(  # a's camera moved to b by the edge
            {"hub": "b", "url": hubs["b"].url, "since": round(time.time(), 3)}), retain=True)
        fake = {"id": cameras["a"], "role": "origin", "version": "0", "url": f"http://127.0.0.1:{free_port()}",
                "instance": "f00", "cameras": [], "started": time.time()}
        board.publish(f"camhub/hubs/{cameras['a']}/info", json.dumps(fake), retain=True)  # a board as a hub
        board.publish(f"camhub/hubs/{cameras['a']}/availability", "online", retain=True)
        board.publish(f"camhub/hubs/{cameras['a']}/beat", b"")
        flagged = time.time()
        home.publish("camhub/hubs/a/ha_integration", "on", retain=True)  # the camhub integration adopts a
        wait_until(lambda: get_json(hubs["a"].url + "/api/hub")["home_assistant"]["integration"], 10,
                   "a hearing Home Assistant's integration flag")
        assert home.wait_for("camhub/hubs/a/ha_integration", after=flagged).text == "on"
        time.sleep(1.5)  # what the forged messages would have done by now (a claim moves a camera in 0.2 s)
        assert get_json(hubs["b"].url + "/api/hub")["home_assistant"]["integration"] is False
        for url in urls:
            assert members(url) == expected
        assert owned_once(get_json, urls, cameras.values()) == owners
        newcomer = Observer(broker.port, ["camhub/hubs/#", "camhub/cameras/#"], username="homeassistant",
                            password=users["homeassistant"])
        stack.callback(newcomer.close)
        assert newcomer.wait_for("camhub/hubs/b/availability").text == "online"
        assert newcomer.wait_for("camhub/hubs/b/info").json()["role"] == "origin"
        assert newcomer.wait_for(f"camhub/cameras/{cameras['a']}/owner").json()["hub"] == "a"
        time.sleep(0.5)
        assert newcomer.on(f"camhub/hubs/{cameras['a']}/#") == []
