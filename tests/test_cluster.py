"""Several hubs as one, on loopback (the real hubs and nodes as processes, one mosquitto): what a
user sees of a cluster. The same behaviours across separate machines, with failures of the network
too, are the scenarios of tests/test_cluster_scenarios.py (network namespaces, ``make test-cluster``).

- origins share the cameras out: each owned by exactly one, as the hash prefers; every hub lists
  every camera with its owner and every member; each board is pulled by one hub, its owner;
- an origin killed (SIGKILL): its cameras stream again through the others within seconds, and when
  it comes back it takes none of them back;
- an edge serves any camera with one pull from its owner however many watch it here; its viewers stay
  connected through a change of owner: the camera shows ``stalled``, then frames again;
- with auth on everywhere the hubs pull from each other (the cluster credential), and a view token
  handed out by one hub opens the camera on another; another hub's pull of a camera this hub does
  not own is refused (409, naming the owner);
- never the third hub on a board: with two other hubs on it an origin waits; with one it pulls and
  /metrics counts the camera as shared until the board shows it alone;
- a camera's retained topics are written by its owner only (a hub that merely sees it sends nothing,
  not even the first motion OFF a single hub sends for a camera it has just seen).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from camhub.hub.cluster.credentials import ClusterKey
from camhub.hub.cluster.hashing import preferred
from tests.support.cluster import SECRET, cluster_env, hub_pullers, instance, metrics, owned_once
from tests.support.integration import integration_module
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

pytestmark = pytest.mark.timeout(180)


@dataclass
class Cluster:
    broker: Mosquitto
    tmp: Path
    nodes: dict[str, SimNode] = field(default_factory=dict)
    hubs: dict[str, HubProcess] = field(default_factory=dict)

    def node(self, node_id: str, **env: str) -> SimNode:
        node = self.nodes[node_id] = SimNode(node_id, self.broker.port, fps=3, frame_size="QQVGA", env=env)
        return node

    def hub(self, hub_id: str, role: str = "origin", **env: str) -> HubProcess:
        hub = self.hubs[hub_id] = HubProcess(self.broker.port, self.tmp / hub_id, env=cluster_env(role, hub_id, **env))
        return hub

    def urls(self, *hub_ids: str) -> list[str]:
        return [self.hubs[h].url for h in (hub_ids or self.hubs)]

    def ready(self) -> None:
        for proc in [*self.hubs.values(), *self.nodes.values()]:
            proc.wait_ready()  # type: ignore[attr-defined]

    def stop(self) -> None:
        for proc in [*self.hubs.values(), *self.nodes.values()]:
            proc.stop()


@pytest.fixture
def cluster(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(mosquitto, tmp_path)
    yield made
    made.stop()


def camera(hub: HubProcess, camera_id: str) -> dict:
    return get_json(f"{hub.url}/api/cameras/{camera_id}")


def test_origins_share_the_cameras_a_dead_one_s_move_at_once_and_a_returning_one_takes_none_back(
        cluster: Cluster) -> None:
    names = ["o1", "o2", "o3"]
    cameras = [f"cam{i}" for i in range(1, 7)]
    for name in names:
        cluster.hub(name)
    for camera_id in cameras:
        cluster.node(camera_id)
    cluster.ready()
    owners = wait_until(lambda: owned_once(get_json, cluster.urls(), cameras), 20, "every camera owned once")
    assert owners == {c: preferred(c, names) for c in cameras}
    assert len(set(owners.values())) > 1
    instances = {name: instance(get_json, cluster.hubs[name].url) for name in names}
    pulled = wait_until(lambda: all(hub_pullers(get_json(cluster.nodes[c].url + "/status")) == [instances[o]]
                                    for c, o in owners.items()), 15, "each board pulled by its owner alone")
    assert pulled
    for url in cluster.urls():  # one UI over all of them: every camera with its owner, every member
        def listed(url: str = url) -> dict[str, dict]:
            return {c["id"]: c for c in get_json(url + "/api/cameras")}
        wait_until(lambda: {c: (o := listed()[c]["owner"]) and o["hub"] for c in cameras} == owners, 15,
                   "every hub naming every camera's owner")  # claims travel behind each other on the broker
        wait_until(lambda: all(camera["state"] == "streaming" for camera in listed().values()), 10,
                   "every camera streaming, as its owner says")
        members = get_json(url + "/api/hub")["cluster"]["members"]
        assert sorted((m["id"], m["role"], m["online"]) for m in members) == [(n, "origin", True) for n in names]
        def counted(url: str = url) -> bool:
            return sum(m["cameras_owned"] for m in get_json(url + "/api/hub")["cluster"]["members"]) == len(cameras)
        wait_until(counted, 10, "every member's count of cameras owned")

    victim = max(names, key=lambda n: list(owners.values()).count(n))
    moved = [c for c, o in owners.items() if o == victim]
    survivors = [n for n in names if n != victim]
    cluster.hubs[victim].stop(signal.SIGKILL)
    killed = time.monotonic()

    def streaming_elsewhere() -> dict[str, str] | None:
        found = owned_once(get_json, cluster.urls(*survivors), cameras)
        if found and all(camera(cluster.hubs[found[c]], c)["state"] == "streaming" for c in moved):
            return found
        return None
    after = wait_until(streaming_elsewhere, 15, "the dead origin's cameras streaming through the others")
    took = time.monotonic() - killed
    assert took < 5.0, f"{took:.1f} s"
    assert after == {c: o if o != victim else preferred(c, survivors) for c, o in owners.items()}
    wait_until(lambda: all(hub_pullers(get_json(cluster.nodes[c].url + "/status")) == [instances[after[c]]]
                           for c in moved), 10, "each moved board pulled by its new owner alone")

    cluster.hub(victim).wait_ready()  # it comes back, with the same id
    wait_until(lambda: all(m["online"] for m in get_json(cluster.hubs[survivors[0]].url + "/api/hub")["cluster"]
                           ["members"]), 10, "the origin back online")
    time.sleep(5)  # longer than its start-up wait: it would have claimed by now
    assert owned_once(get_json, cluster.urls(), cameras) == after, "sticky: nothing moved back"
    for name in survivors:
        assert metrics(cluster.hubs[name].url).get('camhub_cluster_ownership_changes_total{kind="lost"}', 0) == 0


def test_an_edge_serves_any_camera_with_one_pull_and_its_viewers_stay_through_a_change_of_owner(
        cluster: Cluster) -> None:
    for name in ("o1", "o2"):
        cluster.hub(name)
    edge = cluster.hub("e1", role="edge")
    for camera_id in ("cam1", "cam2"):
        cluster.node(camera_id)
    cluster.ready()
    owners = wait_until(lambda: owned_once(get_json, cluster.urls(), ["cam1", "cam2"]), 20, "owned")
    owner = cluster.hubs[owners["cam1"]]
    viewers = [StreamReader(f"{edge.url}/cameras/cam1/stream", timeout=15) for _ in range(3)]
    try:
        for viewer in viewers:
            viewer.parts(2)
        pulls = [c for c in camera(owner, "cam1")["clients"] if c["user_agent"].startswith("camhub-hub/")]
        assert len(pulls) == 1, "one pull from the owner however many watch on the edge"
        assert pulls[0]["user_agent"].endswith(f"(+{instance(get_json, edge.url)})")
        assert len(hub_pullers(get_json(cluster.nodes["cam1"].url + "/status"))) == 1
        assert camera(edge, "cam1")["owner"]["hub"] == owners["cam1"] and not camera(edge, "cam1")["owned"]
        other = next(n for n in ("o1", "o2") if n != owners["cam1"])  # a hub following an old claim is refused
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{cluster.hubs[other].url}/cameras/cam1/stream",
                                                          headers=ClusterKey(SECRET, "e1").headers(other)), timeout=5)
        assert refused.value.code == 409 and json.loads(refused.value.read())["owner"] == owners["cam1"]
        # a snapshot of a camera nobody watches; the edge knows its state from its owner's retained state, which
        # a busy owner may not have sent yet
        wait_until(lambda: get_json(f"{edge.url}/api/cameras/cam2")["state"] == "streaming", 20,
                   "the edge seeing cam2 streaming")
        with urllib.request.urlopen(f"{edge.url}/cameras/cam2/snapshot.jpg", timeout=10) as resp:
            assert resp.status == 200 and resp.read(2) == b"\xff\xd8"

        last = [v.read_part().seq for v in viewers]
        states: list[str] = []
        owner.stop(signal.SIGKILL)

        def new_frames() -> bool:
            state = camera(edge, "cam1")["state"]
            if not states or states[-1] != state:
                states.append(state)
            return state == "streaming" and "stalled" in states
        wait_until(new_frames, 15, "the edge's camera stalled, then streaming again", interval=0.05)
        for viewer, seq in zip(viewers, last, strict=True):  # the same connections: frames again
            deadline = time.monotonic() + 10
            while viewer.read_part().seq <= seq + 3:
                assert time.monotonic() < deadline, "no new frames on a viewer that stayed"
        assert camera(edge, "cam1")["owner"]["hub"] != owners["cam1"]
    finally:
        for viewer in viewers:
            viewer.close()


def test_never_the_third_hub_on_a_board_and_a_shared_board_is_counted(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.node("cam1", CAMHUB_MAX_CLIENTS="3")
    singles = [HubProcess(cluster.broker.port, tmp_path / f"single{i}") for i in range(2)]  # two single hubs
    try:
        for hub in singles:
            hub.wait_ready()
        node.wait_ready()
        wait_until(lambda: len(hub_pullers(get_json(node.url + "/status"))) == 2, 15, "two single hubs pulling")
        origin = cluster.hub("o1").wait_ready()
        wait_until(lambda: metrics(origin.url).get('camhub_cluster_pulls_refused_total{reason="third_hub"}', 0) >= 1,
                   15, "the origin refusing to be the third")
        assert camera(origin, "cam1")["owned"] and camera(origin, "cam1")["state"] != "streaming"
        assert "not a third" in (camera(origin, "cam1")["last_error"] or "")
        assert len(hub_pullers(get_json(node.url + "/status"))) == 2
        singles[0].stop()
        wait_until(lambda: camera(origin, "cam1")["state"] == "streaming", 40, "the origin pulling once one left")
        assert len(hub_pullers(get_json(node.url + "/status"))) == 2
        shared = 'camhub_cluster_cameras_shared'
        assert metrics(origin.url)[shared] == 1 and metrics(origin.url)["camhub_cluster_shared_pulls_total"] == 1
        singles[1].stop()
        wait_until(lambda: metrics(origin.url)[shared] == 0, 15, "the board alone with its owner again")
        assert hub_pullers(get_json(node.url + "/status")) == [instance(get_json, origin.url)]
    finally:
        for hub in singles:
            hub.stop()


def test_with_auth_on_everywhere_hubs_pull_from_each_other_and_one_hub_s_token_opens_another(
        cluster: Cluster) -> None:
    auth = {"CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": "pw"}
    origin = cluster.hub("o1", **auth)
    edge = cluster.hub("e1", role="edge", **auth)
    cluster.node("cam1")
    cluster.ready()
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}

    def api(url: str) -> dict:
        with urllib.request.urlopen(urllib.request.Request(url, headers=basic), timeout=5) as resp:
            return json.loads(resp.read())
    wait_until(lambda: api(f"{origin.url}/api/cameras/cam1")["state"] == "streaming", 20, "the origin streaming")
    stream_url = api(f"{origin.url}/api/cameras/cam1/urls")["stream"]  # with the camera's view token
    token = stream_url.split("?token=", 1)[1]
    with StreamReader(f"{edge.url}/cameras/cam1/stream?token={token}", timeout=15) as viewer:
        assert viewer.status == 200
        assert len({part.seq for part in viewer.parts(4)}) == 4, "frames through the edge's pull from the origin"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{edge.url}/cameras/cam1/stream?token={'0' * 32}", timeout=5)
    assert refused.value.code == 401


def test_a_moved_camera_s_recordings_list_both_holders_and_play_through_any_hub(cluster: Cluster) -> None:
    record = {"CAMHUB_RECORD": "always", "CAMHUB_RECORD_SEGMENT_S": "4", "CAMHUB_MOTION": "off"}
    for name in ("o1", "o2"):
        cluster.hub(name, **record)
    edge = cluster.hub("e1", role="edge", **record)
    cluster.node("cam1")
    cluster.ready()
    first = wait_until(lambda: owned_once(get_json, cluster.urls(), ["cam1"]), 20, "owned")["cam1"]
    second = next(n for n in ("o1", "o2") if n != first)

    def held(hub: str) -> list[dict]:
        return get_json(f"{cluster.hubs[hub].url}/api/cameras/cam1/recordings?local=1")
    # a closed segment (one open when its hub is killed may be lost with it: the muxer had not written it)
    wait_until(lambda: [i for i in held(first) if not i["open"]], 30, f"a closed recording on {first}")
    cluster.hubs[first].stop(signal.SIGKILL)
    wait_until(lambda: held(second), 30, f"a recording on {second}, the new owner")
    cluster.hub(first, **record).wait_ready()  # back with its disk; the camera stays with the new owner

    def merged() -> list[dict] | None:
        items = get_json(f"{edge.url}/api/cameras/cam1/recordings")
        return items if {i["hub"] for i in items} == {first, second} else None
    items = wait_until(merged, 20, "the edge listing both holders' recordings")
    assert items == sorted(items, key=lambda i: i["start"], reverse=True)
    assert not held(first)[0].get("hub") or held(first)[0]["hub"] == first
    old = next(i for i in items if i["hub"] == first)
    assert old["stream"] == f"/cameras/cam1/recordings/{old['id']}/stream?hub={first}"
    with StreamReader(f"{edge.url}{old['stream']}&speed=8", timeout=15) as playback:  # through the edge
        assert playback.status == 200 and playback.response_headers["x-recording-id"] == old["id"]
        assert playback.read_part().image().size == (160, 120)
    with urllib.request.urlopen(f"{cluster.hubs[second].url}{old['download']}", timeout=10) as download:
        assert download.headers["Content-Type"] == "video/x-matroska" and download.read(4) == b"\x1a\x45\xdf\xa3"


def test_home_assistant_entities_are_the_camera_s_whoever_owns_it(cluster: Cluster) -> None:
    observer = Observer(cluster.broker.port, ["camhub/#", "homeassistant/#"])
    try:
        home_assistant_follows_the_owner(cluster, observer)
    finally:
        observer.close()


def home_assistant_follows_the_owner(cluster: Cluster, observer: Observer) -> None:
    for name in ("o1", "o2"):
        cluster.hub(name)
    cluster.node("cam1")
    cluster.ready()
    first = wait_until(lambda: owned_once(get_json, cluster.urls(), ["cam1"]), 20, "owned")["cam1"]
    second = next(n for n in ("o1", "o2") if n != first)
    fps_topic = "homeassistant/sensor/camhub_camera_cam1_fps_in/config"

    def config_from(hub: str) -> dict | None:
        found = [m for m in observer.on(fps_topic) if m.payload]
        latest = found[-1].json() if found else None
        return latest if latest and latest["device"]["via_device"] == f"camhub_hub_{hub}" else None
    before = wait_until(lambda: config_from(first), 15, "the owner's discovery of the camera")
    assert {"topic": f"camhub/hubs/{first}/availability"} in before["availability"]
    for hub in ("o1", "o2"):  # each hub is a device of its own
        wait_until(lambda hub=hub: observer.on(f"homeassistant/binary_sensor/camhub_hub_{hub}_online/config"),
                   10, f"{hub}'s own device")
    cluster.hubs[first].stop(signal.SIGKILL)
    after = wait_until(lambda: config_from(second), 15, "the new owner's discovery of the camera")
    assert after["unique_id"] == before["unique_id"] == "camhub_camera_cam1_fps_in"
    assert after["device"]["identifiers"] == before["device"]["identifiers"] == ["camhub_camera_cam1"]
    assert {"topic": f"camhub/hubs/{second}/availability"} in after["availability"]
    wait_until(lambda: any(m.json()["state"] == "streaming" for m in observer.on("camhub/hub/cameras/cam1/state")
                           if m.at > time.time() - 5), 15, "the new owner's state of the camera")
    assert not [m for m in observer.on("homeassistant/+/+/config") if "camera_cam1" in m.topic and not m.payload], \
        "no hub cleared the camera's entities"


def test_home_assistant_s_camhub_integration_adopts_each_hub_with_the_cameras_it_owns(cluster: Cluster) -> None:
    """In a cluster each hub is an entry of its own in Home Assistant's camhub integration: its own retained
    info (``camhub/hubs/<id>/ha_info``, device ``camhub_hub_<id>``, its own flag topic), the same in its
    /api/hub; a camera's device block in any hub's API is via its owner, and ``owned`` marks the cameras a
    hub's entry shows; one hub's flag takes the MQTT camera entity away from the cameras it owns only."""
    observer = Observer(cluster.broker.port, ["camhub/#", "homeassistant/#"])
    try:
        integration_per_hub(cluster, observer)
    finally:
        observer.close()


async def integration_cameras(url: str) -> dict[str, dict]:
    """The cameras Home Assistant's camhub integration shows for the hub at ``url`` (its own client)."""
    async with aiohttp.ClientSession() as session:
        return await integration_module("hub").HubClient(session, url, None, None).cameras()


def integration_per_hub(cluster: Cluster, observer: Observer) -> None:
    owned_by: dict[str, str] = {}  # hub -> a camera the hash gives it
    for candidate in (f"cam{i}" for i in range(1, 20)):
        owned_by.setdefault(preferred(candidate, ["o1", "o2"]) or "", candidate)
    for name in ("o1", "o2"):
        cluster.hub(name)
    for camera_id in (owned_by["o1"], owned_by["o2"]):
        cluster.node(camera_id)
    cluster.ready()
    owners = wait_until(lambda: owned_once(get_json, cluster.urls(), [owned_by["o1"], owned_by["o2"]]), 20, "owned")
    assert owners == {owned_by["o1"]: "o1", owned_by["o2"]: "o2"}
    via_owner = {camera_id: f"camhub_hub_{owner}" for camera_id, owner in owners.items()}
    for hub_id, hub in cluster.hubs.items():
        info = observer.wait_for(f"camhub/hubs/{hub_id}/ha_info").json()
        assert info["device"]["identifiers"] == [f"camhub_hub_{hub_id}"] and info["url"] == hub.url
        assert info["integration_topic"] == f"camhub/hubs/{hub_id}/ha_integration"
        assert {k: v for k, v in get_json(hub.url + "/api/hub")["home_assistant"].items() if k != "integration"} == info
        # each hub hears the other's claim a moment after the claim is made: wait for its own view to agree
        listed = wait_until(lambda url=hub.url: (cams := get_json(url + "/api/cameras")) and {
            c["id"]: c["ha_device"]["via_device"] for c in cams} == via_owner and cams, 10,
            f"{hub_id}'s API naming each camera's owner")
        assert [c["id"] for c in listed if c["owned"]] == [owned_by[hub_id]]
        assert list(asyncio.run(integration_cameras(hub.url))) == [owned_by[hub_id]]  # what its entry shows
    assert not observer.on("camhub/hub/info"), "no hub of a cluster writes the single hub's info"

    def camera_entity(camera_id: str) -> str:
        return f"homeassistant/camera/camhub_camera_{camera_id}_camera/config"
    for camera_id in owners:
        observer.wait_for(camera_entity(camera_id), lambda m: m.payload != b"", timeout=15)
    flagged = time.time()
    observer.publish("camhub/hubs/o1/ha_integration", "on", retain=True)
    try:
        observer.wait_for(camera_entity(owned_by["o1"]), lambda m: m.payload == b"", timeout=10, after=flagged)
        o1, o2 = (cluster.hubs[h].url + "/api/hub" for h in ("o1", "o2"))
        wait_until(lambda: get_json(o1)["home_assistant"]["integration"], 5, "o1 heard its flag")
        time.sleep(1.0)
        assert get_json(o2)["home_assistant"]["integration"] is False
        assert not [m for m in observer.on(camera_entity(owned_by["o2"])) if m.at >= flagged and not m.payload], \
            "o2's camera keeps its MQTT camera entity (o2 has no integration entry)"
    finally:
        observer.publish("camhub/hubs/o1/ha_integration", b"", retain=True)


def test_a_camera_s_topics_are_written_by_its_owner_only(cluster: Cluster) -> None:
    # a hub that sees a camera it does not own (here an edge) writes none of its retained topics, not even
    # the first motion OFF a single hub sends for a camera it has just seen; the owner, once there, does
    observer = Observer(cluster.broker.port, ["camhub/hub/cameras/cam1/#"])
    try:
        edge = cluster.hub("e1", role="edge")
        cluster.node("cam1")
        cluster.ready()
        wait_until(lambda: camera(edge, "cam1")["announce"], 20, "the edge seeing cam1 (its announce)")
        time.sleep(2.0)
        assert observer.on("camhub/hub/cameras/cam1/motion") == []
        assert observer.on("camhub/hub/cameras/cam1/state") == []
        origin = cluster.hub("o1")
        origin.wait_ready()
        assert observer.wait_for("camhub/hub/cameras/cam1/motion", timeout=20).text == "OFF"
        observer.wait_for("camhub/hub/cameras/cam1/state", timeout=10)
    finally:
        observer.close()
