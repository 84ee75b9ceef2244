"""The cluster as separate machines (network namespaces, tests/support/netbed.py; ``make test-cluster``):
issue #21's scenarios 1-8, each asserting what a user sees, with the failover times measured (printed as
``measured: ...`` lines; docs/cluster.md carries them).

1. Three origins and eight boards: every camera owned exactly once, spread over the origins; each board
   sees exactly one hub pulling it.
2. ``kill -9`` an origin: its cameras stream again through the others within 5 s; its viewers (through
   HAProxy, reconnecting) get frames again within 5 s of that.
3. Silent machine death (its link down): the same within 10 s, with the default keep-alive.
4. A paused owner (SIGSTOP 20 s, then SIGCONT): no camera unowned for long, no board pulled by more
   than two hubs at any moment, one again within a few seconds of the resume; /metrics shows the overlap.
5. The dead origin returns: ownership stays put; nothing flaps.
6. Two edges behind HAProxy: a camera's viewers land on one edge, each edge pulls a camera from its owner
   at most once, the board sees one puller; an edge killed is taken out by the health check and its
   viewers resume through the other.
7. Tokens from one hub open streams on another; a forged X-Forwarded-For from an untrusted address
   changes nothing; the recordings list of a camera that moved shows both holders' recordings.
8. A real Home Assistant (tests/ha/install.sh, as ``make test-ha``; skipped without it) on a machine of its
   own keeps a camera's entities and device across an owner change, and shows it streaming again.
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from camhub.hub.cluster.hashing import preferred
from tests.support import netbed as nb
from tests.support.cluster import cluster_env, hub_pullers, owned_once
from tests.support.homeassistant import HomeAssistant, require_ha
from tests.support.mjpeg_client import StreamReader
from tests.support.procs import HubProcess, Mosquitto, Process, SimNode
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

FPS = 3  # QQVGA at a few frames per second: the whole bed shares a busy 2-core machine


def measured(what: str, seconds: float) -> float:
    print(f"measured: {what}: {seconds:.2f} s")
    return seconds


@dataclass
class Bed:
    """A cluster on the bed: a broker, boards (one node each), origins and edges (a host each), HAProxy
    in front of ``front`` hubs, and a viewer host everything is read from (a user's machine)."""

    bed: nb.NetBed
    broker: Mosquitto
    viewer: nb.Host
    proxy: nb.Host
    boards: dict[str, nb.Host] = field(default_factory=dict)
    nodes: dict[str, SimNode] = field(default_factory=dict)
    hosts: dict[str, nb.Host] = field(default_factory=dict)
    hubs: dict[str, HubProcess] = field(default_factory=dict)
    lb: nb.HAProxy | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        password = self.env.get("CAMHUB_HUB_PASSWORD")
        return {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()} \
            if password else {}

    def request(self, url: str, auth: bool = True, headers: dict[str, str] | None = None,
                source: nb.Host | None = None) -> tuple[int, bytes]:
        """GET ``url`` from the viewer's machine (or ``source``), with the hubs' login unless ``auth`` is False."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(url, headers={**(self.auth if auth else {}), **(headers or {})})
        with self.bed.inside(source or self.viewer):
            try:
                with opener.open(request, timeout=10) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

    def get(self, url: str, source: nb.Host | None = None) -> Any:
        status, body = self.request(url, source=source)
        if status != 200:
            raise OSError(f"GET {url}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def urls(self, names: Iterable[str] | None = None) -> list[str]:
        return [self.hubs[n].url for n in (names if names is not None else self.hubs)]

    def start_hub(self, name: str, role: str = "origin", wait: bool = True) -> HubProcess:
        host = self.hosts.get(name) or self.hosts.setdefault(name, self.bed.host(name))
        env = cluster_env(role, name, CAMHUB_TRUSTED_PROXIES=self.proxy.address, **self.env)
        hub = self.hubs[name] = self.bed.hub(host, self.broker, proxies=[self.proxy], env=env, wait=wait)
        return hub

    def owners(self, names: Iterable[str], cameras: Iterable[str] | None = None) -> dict[str, str] | None:
        return owned_once(self.get, self.urls(names), list(cameras if cameras is not None else self.nodes))

    def pullers(self, camera: str) -> list[str]:
        return hub_pullers(self.get(self.nodes[camera].url + "/status"))

    def instance(self, name: str) -> str:
        return self.get(self.hubs[name].url + "/api/hub")["cluster"]["instance"]

    def camera(self, name: str, camera: str) -> dict:
        return self.get(f"{self.hubs[name].url}/api/cameras/{camera}")

    def metric(self, name: str, metric: str) -> float:
        status, body = self.request(self.hubs[name].url + "/metrics")
        assert status == 200
        for line in body.decode().splitlines():
            if line.startswith(metric + " ") or line.startswith(metric + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stream(self, camera: str) -> str:
        return self.proxy.url(f"/cameras/{camera}/stream")

    def viewers(self, cameras: Iterable[str], per_camera: int = 1) -> Process:
        """Reconnecting viewers through HAProxy (benchmarks/viewers.py), running until ``summary()``."""
        args = nb.viewer_tool([self.stream(c) for c in cameras], per_camera, 0, "--report-every", "0.5",
                              "--retry-s", "0.3", "--stall-s", "8")
        return self.bed.run(self.viewer, args, name="viewers")


def cluster(bed: nb.NetBed, boards: int, origins: int, edges: int = 0, front: str = "origins",
            env: dict[str, str] | None = None) -> Bed:
    broker_host, proxy, viewer = bed.hosts("broker", "proxy", "viewer")
    made = Bed(bed, bed.mosquitto(broker_host), viewer, proxy, env=env or {})
    for i in range(1, boards + 1):
        board = made.boards[f"cam{i}"] = bed.host(f"board{i}")
        made.nodes[f"cam{i}"] = bed.node(board, f"cam{i}", made.broker, fps=FPS, wait=False)
    for i in range(1, origins + 1):
        made.start_hub(f"o{i}", wait=False)
    for i in range(1, edges + 1):
        made.start_hub(f"e{i}", role="edge", wait=False)
    for proc in (*made.nodes.values(), *made.hubs.values()):  # started together, waited for in turn
        proc.wait_ready()  # type: ignore[attr-defined]
    front_hubs = [h for n, h in made.hubs.items() if front == "all" or n.startswith(front[0])]
    made.lb = bed.haproxy(proxy, front_hubs)
    names = [n for n in made.hubs if n.startswith("o")]
    wait_until(lambda: made.owners(names), 30, "every camera owned once")
    return made


def summary(proc: Process) -> dict:
    proc.stop(signal.SIGTERM)
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert lines and lines[-1]["event"] == "summary", proc.output()[-2000:]
    return lines[-1]


def streaming_at_owner(world: Bed, names: list[str], cameras: list[str]) -> Callable[[], dict[str, str] | None]:
    """A probe: ``{camera: owner}`` once each of ``cameras`` is owned by one of ``names`` and streams there."""
    def probe() -> dict[str, str] | None:
        found = world.owners(names)
        if found and all(world.camera(found[c], c)["state"] == "streaming" for c in cameras):
            return found
        return None
    return probe


def fail_an_origin(netbed: nb.NetBed, fault: Callable[[Bed, nb.Host], None], limit_s: float,
                   what: str) -> tuple[Bed, str, dict[str, str]]:
    """Three origins, four boards, two viewers of each camera through HAProxy; ``fault`` hits the origin
    owning the most cameras: its cameras stream again through the others within ``limit_s``, and every
    viewer gets fresh frames within 5 s of that."""
    world = cluster(netbed, boards=4, origins=3)
    names = ["o1", "o2", "o3"]
    owners = world.owners(names)
    assert owners
    viewers = world.viewers(world.nodes, per_camera=2)
    wait_until(lambda: any(e.get("streaming") == 2 * len(world.nodes) for e in events(viewers)), 20,
               "every viewer streaming")
    # the victim: an origin that owns cameras and serves viewers (HAProxy hashes the camera ids over them)
    served = {n: sum(1 for c in world.nodes for v in world.camera(n, c)["clients"]
                     if not v["user_agent"].startswith("camhub-hub/")) for n in names}
    victim = max(names, key=lambda n: (served[n] > 0, list(owners.values()).count(n), served[n]))
    moved = [c for c, o in owners.items() if o == victim]
    survivors = [n for n in names if n != victim]
    print(f"measured: {what}: the victim {victim} owns {moved} and serves {served[victim]} viewers")
    hit = time.time()
    fault(world, world.hosts[victim])
    after = wait_until(streaming_at_owner(world, survivors, moved), limit_s + 15, "the cameras streaming again")
    recovered = measured(f"{what}: the dead origin's {len(moved)} cameras streaming again through the others",
                         time.time() - hit)
    assert recovered <= limit_s
    assert after == {c: o if o != victim else preferred(c, survivors) for c, o in owners.items()}
    wait_until(lambda: all(e.get("streaming") == 2 * len(world.nodes) for e in events(viewers)[-1:]), 15,
               "every viewer streaming again")
    report = summary(viewers)
    stale = longest_without_a_fresh_frame(report)
    cut = sum(sum(v["errors"].values()) for v in report["viewers"])
    print(f"measured: {what}: {cut} viewer connections cut (they reconnected through HAProxy)")
    measured(f"{what}: the longest a viewer (through HAProxy) went without a fresh frame", stale)
    assert stale <= recovered + 5 + 1, report  # + 1: a frame's own age (3 fps, the pipeline)
    for camera in moved:  # each moved board is pulled by its new owner alone
        wait_until(lambda camera=camera: world.pullers(camera) == [world.instance(after[camera])], 15,
                   f"{camera}'s board pulled by its new owner alone")
    return world, victim, after


def longest_without_a_fresh_frame(report: dict) -> float:
    """Seconds, the worst viewer: the longest gap between parts (a reconnect) or the oldest part's age (a
    viewer that stayed gets its camera's last frame again every 2 s while no new one arrives)."""
    return max(max(v["max_gap_s"], (v["age_ms"]["max"] or 0) / 1000) for v in report["viewers"])


def events(proc: Process) -> list[dict]:
    return [json.loads(line) for line in proc.output().splitlines() if line.startswith('{"event": "progress"')]


# -- 1 and 2 and 5 -----------------------------------------------------------------------------------------


def test_1_origins_share_eight_boards_each_pulled_by_one_hub(netbed: nb.NetBed) -> None:
    world = cluster(netbed, boards=8, origins=3)
    names = ["o1", "o2", "o3"]
    owners = world.owners(names)
    assert owners == {c: preferred(c, names) for c in world.nodes}
    spread = {n: sorted(c for c, o in owners.items() if o == n) for n in names}
    print(f"measured: ownership of 8 cameras over 3 origins: {spread}")
    assert sum(1 for cams in spread.values() if cams) >= 2, spread
    instances = {n: world.instance(n) for n in names}
    wait_until(lambda: all(world.pullers(c) == [instances[o]] for c, o in owners.items()), 20,
               "each board pulled by exactly one hub, its owner")
    for url in world.urls():  # every hub lists every camera with its owner
        wait_until(lambda url=url: {c["id"]: (c["owner"] or {}).get("hub") for c in world.get(url + "/api/cameras")}
                   == owners, 15, "every hub naming every owner")


def test_2_and_5_a_killed_origin_s_cameras_and_viewers_move_and_it_takes_nothing_back(netbed: nb.NetBed) -> None:
    world, victim, after = fail_an_origin(netbed, lambda w, host: w.bed.crash(host), 5.0, "kill -9")
    changes = {n: world.metric(n, 'camhub_cluster_ownership_changes_total{kind="gained"}') for n in after.values()}
    world.start_hub(victim)  # scenario 5: it returns (the same machine, id and disk)
    wait_until(lambda: all(m["online"] for m in world.get(world.hubs[victim].url + "/api/hub")["cluster"]
                           ["members"]), 15, "the origin back and seeing everyone")
    deadline = time.monotonic() + 8  # longer than its start-up wait (3 s) and its settle: it would have claimed
    while time.monotonic() < deadline:
        assert world.owners(list(world.hubs)) == after, "sticky: nothing moved back"
        time.sleep(0.5)
    for name, gained in changes.items():  # nothing flapped
        assert world.metric(name, 'camhub_cluster_ownership_changes_total{kind="gained"}') == gained
        assert world.metric(name, 'camhub_cluster_ownership_changes_total{kind="lost"}') == 0
    assert world.metric(victim, "camhub_cluster_cameras_owned") == 0


# -- 3 --------------------------------------------------------------------------------------------------


def test_3_a_silent_machine_death_moves_its_cameras_and_viewers_within_10_s(netbed: nb.NetBed) -> None:
    fail_an_origin(netbed, lambda w, host: w.bed.link_down(host), 10.0, "link down")


# -- 4 --------------------------------------------------------------------------------------------------


def test_4_a_paused_owner_never_makes_a_third_puller_and_yields_when_it_resumes(netbed: nb.NetBed) -> None:
    world = cluster(netbed, boards=4, origins=3)
    names = ["o1", "o2", "o3"]
    owners = world.owners(names)
    assert owners
    victim = max(names, key=lambda n: list(owners.values()).count(n))
    moved = [c for c, o in owners.items() if o == victim]
    survivors = [n for n in names if n != victim]
    most: dict[str, int] = {c: 0 for c in world.nodes}
    unowned_since: dict[str, float] = {}
    longest_unowned = 0.0
    stop = threading.Event()

    def watch() -> None:  # every board's hub pullers and the cameras without a live owner, all along
        nonlocal longest_unowned
        while not stop.is_set():
            for camera in world.nodes:
                try:
                    most[camera] = max(most[camera], len(world.pullers(camera)))
                except OSError:
                    pass
            try:
                unowned = set(world.get(world.hubs[survivors[0]].url + "/api/hub")["cluster"]["cameras_unowned"])
            except OSError:
                continue
            now = time.time()
            for camera in unowned:
                unowned_since.setdefault(camera, now)
            for camera in [c for c in unowned_since if c not in unowned]:
                longest_unowned = max(longest_unowned, now - unowned_since.pop(camera))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        frozen = time.time()
        world.bed.freeze(world.hosts[victim])
        after = wait_until(streaming_at_owner(world, survivors, moved), 20, "the paused owner's cameras moved")
        measured("SIGSTOP: the paused owner's cameras streaming again through the others", time.time() - frozen)
        shared = wait_until(lambda: sum(world.metric(n, "camhub_cluster_cameras_shared") for n in survivors), 10,
                            "the overlap in /metrics (the paused hub still holds its connections)")
        print(f"measured: cameras shared with the paused owner, per /metrics: {shared:.0f} of {len(moved)}")
        assert all(1 <= len(world.pullers(c)) <= 2 for c in moved)
        time.sleep(max(0.0, frozen + 20 - time.time()))
        resumed = time.time()
        world.bed.thaw(world.hosts[victim])
        # back on the broker after its settle, it sees the new owners and yields (until then, cut off, it may
        # pull what it owned: a second puller on a board, never a third)
        wait_until(lambda: world.owners(names) == after, 20, "the resumed hub yielding")
        measured("SIGCONT: the resumed hub yielded its cameras", time.time() - resumed)
        instances = {n: world.instance(n) for n in survivors}
        wait_until(lambda: all(world.pullers(c) == [instances[after[c]]] for c in moved), 20,
                   "one puller per board again, its owner")
        measured("SIGCONT: one puller per board again after the resume", time.time() - resumed)
        wait_until(lambda: sum(world.metric(n, "camhub_cluster_cameras_shared") for n in survivors) == 0, 10,
                   "no camera shared any more")
        assert world.metric(victim, 'camhub_cluster_ownership_changes_total{kind="lost"}') == len(moved)
        assert sum(world.metric(n, "camhub_cluster_shared_pulls_total") for n in survivors) >= 1
    finally:
        stop.set()
        watcher.join(5)
    measured("SIGSTOP: the longest a camera had no live owner", longest_unowned)
    assert longest_unowned < 10
    assert max(most.values()) <= 2, most  # never a third hub on a board


# -- 6 --------------------------------------------------------------------------------------------------


def test_6_two_edges_behind_haproxy_one_pull_per_camera_each_and_an_edge_s_viewers_move(
        netbed: nb.NetBed) -> None:
    world = cluster(netbed, boards=2, origins=2, edges=2, front="edges")
    assert world.lb is not None
    owners = world.owners(["o1", "o2"])
    assert owners
    # HAProxy's bounded load (hash-balance-factor 150) lets an edge take at most 1.5 x the mean of the
    # connections *at that moment*: a burst of one camera's viewers into an empty cluster would spill its
    # fourth to the other edge. Viewers arrive over time in real life: here one of each camera first.
    first = world.viewers(world.nodes, per_camera=1)
    wait_until(lambda: any(e.get("streaming") == 2 for e in events(first)), 20, "a viewer of each camera")
    more = world.viewers(world.nodes, per_camera=3)
    wait_until(lambda: any(e.get("streaming") == 6 for e in events(more)), 20, "six more viewers streaming")
    viewers = (first, more)
    edges = ["e1", "e2"]
    where: dict[str, str] = {}
    for camera in world.nodes:  # a camera's viewers all on one edge, that edge pulling it once from its owner
        counts = {e: len(world.camera(e, camera)["clients"]) for e in edges}
        assert sorted(counts.values()) == [0, 4], (camera, counts)
        where[camera] = max(counts, key=lambda e: counts[e])
        pulls = [c["user_agent"] for c in world.camera(owners[camera], camera)["clients"]]
        assert pulls == [f"camhub-hub/{ua.split('/', 1)[1]}" for ua in pulls] and len(pulls) == 1, pulls
        assert pulls[0].endswith(f"(+{world.instance(where[camera])})")
        assert len(world.pullers(camera)) == 1
    victim = where["cam1"]
    killed = time.time()
    netbed.crash(world.hosts[victim])
    wait_until(lambda: world.lb.servers()[victim]["status"].startswith("DOWN"), 15, "the edge taken out")
    measured("an edge killed: HAProxy marks it DOWN", time.time() - killed)
    other = next(e for e in edges if e != victim)
    wait_until(lambda: len(world.camera(other, "cam1")["clients"]) == 4, 15, "cam1's viewers on the other edge")
    wait_until(lambda: all(e.get("streaming") == n for proc, n in zip(viewers, (2, 6), strict=True)
                           for e in events(proc)[-1:]), 15, "every viewer streaming")
    measured("an edge killed: its viewers streaming through the other edge", time.time() - killed)
    stale = max(longest_without_a_fresh_frame(summary(proc)) for proc in viewers)
    measured("an edge killed: the longest a viewer went without a fresh frame", stale)
    assert stale < 8
    assert len(world.pullers("cam1")) == 1


# -- 7 --------------------------------------------------------------------------------------------------


def test_7_tokens_across_hubs_forged_forwarded_for_and_a_moved_camera_s_recordings(netbed: nb.NetBed) -> None:
    world = cluster(netbed, boards=1, origins=2, edges=1, front="all", env={
        "CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": "pw", "CAMHUB_RECORD": "always",
        "CAMHUB_RECORD_SEGMENT_S": "4", "CAMHUB_MOTION": "off"})
    first = world.owners(["o1", "o2"])["cam1"]  # type: ignore[index]
    second = next(n for n in ("o1", "o2") if n != first)
    # a view token handed out by the owner opens the camera on the edge, which pulls it from the owner
    token = world.get(f"{world.hubs[first].url}/api/cameras/cam1/urls")["stream"].split("?token=", 1)[1]
    with netbed.inside(world.viewer), StreamReader(f"{world.hubs['e1'].url}/cameras/cam1/stream?token={token}",
                                                   timeout=15) as viewer:
        assert viewer.status == 200 and len({p.seq for p in viewer.parts(3)}) == 3
    assert world.request(f"{world.hubs['e1'].url}/cameras/cam1/stream?token={'0' * 32}", auth=False)[0] == 401

    # X-Forwarded-For from the viewer's machine (not a trusted proxy) changes nothing: its guesses are
    # throttled as its own address, whatever it claims to be
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    statuses = [world.request(world.hubs[first].url + "/api/hub", auth=False,
                              headers={**wrong, "X-Forwarded-For": f"203.0.113.{n}"})[0] for n in range(21)]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429
    assert world.request(world.hubs[first].url + "/api/hub", headers={"X-Forwarded-For": "203.0.113.99"})[0] == 429
    # through HAProxy (trusted: it appends the address it got the request from) each machine is its own
    # client: one machine's guesses, whatever it forges, throttle that machine, not the others behind the proxy
    guesser, other = netbed.hosts("viewer2", "viewer3")
    # HAProxy hashes the camera id to one hub, but its bounded load (1.5 x the mean of the connections at
    # that moment) may send a request to the next hub while the previous one's connection is still counted:
    # each hub throttles on its own, so the guesser is refused after 20 guesses at one of the three hubs
    snapshot = world.proxy.url("/cameras/cam1/snapshot.jpg")
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) <= 3 * 20:
        statuses.append(world.request(snapshot, auth=False, source=guesser, headers={
            **wrong, "X-Forwarded-For": f"198.18.9.{len(statuses) % 250}"})[0])
    assert statuses[:20] == [401] * 20 and statuses[-1] == 429, statuses
    assert [world.request(snapshot, source=other, headers={"X-Forwarded-For": "1.2.3.4"})[0]
            for _ in range(5)] == [200] * 5

    # the camera moves (its owner killed after a closed recording), the old owner comes back: the list,
    # through HAProxy, names both holders, and the old holder's recording plays through the proxy (asked
    # from another machine than the viewer's: that one is throttled on the first owner now)
    def held(name: str) -> list[dict]:
        return world.get(f"{world.hubs[name].url}/api/cameras/cam1/recordings?local=1", source=other)
    wait_until(lambda: [i for i in held(first) if not i["open"]], 30, f"a closed recording on {first}")
    netbed.crash(world.hosts[first])
    wait_until(lambda: [i for i in held(second) if not i["open"]], 40, f"a closed recording on {second}")
    world.start_hub(first)
    items = wait_until(lambda: (found := world.get(world.proxy.url("/api/cameras/cam1/recordings"), source=other))
                       and {i["hub"] for i in found} == {first, second} and found, 20, "both holders listed")
    old = next(i for i in items if i["hub"] == first)
    with netbed.inside(other), StreamReader(world.proxy.url(old["stream"] + "&speed=8"), timeout=15,
                                                   headers=world.auth) as playback:
        assert playback.status == 200 and playback.response_headers["x-recording-id"] == old["id"]
        assert playback.read_part().image().size == (160, 120)


# -- 8 --------------------------------------------------------------------------------------------------


def test_8_home_assistant_keeps_a_camera_s_entities_across_an_owner_change(netbed: nb.NetBed) -> None:
    require_ha()
    world = cluster(netbed, boards=1, origins=2, env={"CAMHUB_HA_SNAPSHOT_S": "1"})
    first = world.owners(["o1", "o2"])["cam1"]  # type: ignore[index]
    second = next(n for n in ("o1", "o2") if n != first)
    ha_host = netbed.host("homeassistant")
    ha = netbed.homeassistant(ha_host, world.broker)

    def in_ha(ask: Callable[[HomeAssistant], Any]) -> Any:
        with netbed.inside(ha_host):
            return ask(ha)

    def cam1_entities() -> dict[str, str]:
        """unique_id -> entity_id of the camera's entities, as HA registered them."""
        return {e["unique_id"]: e["entity_id"] for e in in_ha(lambda h: h.entities())
                if e["platform"] == "mqtt" and e["unique_id"].startswith("camhub_camera_cam1_")}

    def state(entity_id: str) -> str | None:
        found = in_ha(lambda h: h.states()).get(entity_id)
        return None if found is None else found["state"]

    def picture() -> bool:
        status, _, content_type = in_ha(lambda h: h.get(f"/api/camera_proxy/{camera}"))
        return status == 200 and content_type.startswith("image/jpeg")

    before = wait_until(lambda: len(found := cam1_entities()) >= 8 and found, 60, "cam1's entities in HA")
    camera = before["camhub_camera_cam1_camera"]
    state_sensor = before["camhub_camera_cam1_state"]
    wait_until(lambda: state(state_sensor) == "streaming", 30, "cam1 streaming in HA")
    wait_until(picture, 20, "cam1's picture in HA")
    hubs = {d["name"] for d in in_ha(lambda h: h.devices()) if d["manufacturer"] == "camhub"
            and any(i[1].startswith("camhub_hub_") for i in d["identifiers"])}
    assert len(hubs) == 2, hubs  # each hub is a device of its own

    def cam1_device() -> list[dict]:
        return [d for d in in_ha(lambda h: h.devices()) if ["mqtt", "camhub_camera_cam1"] in d["identifiers"]]

    def shown_by(hub: str) -> bool:
        """HA has the camera from ``hub`` (its discovery names it) and shows it available and streaming."""
        found = cam1_device()
        return bool(found) and found[0]["configuration_url"].startswith(world.hubs[hub].url + "/") \
            and state(camera) not in ("unavailable", None) and state(state_sensor) == "streaming"

    wait_until(lambda: shown_by(first), 20, "HA showing cam1 from its owner")
    devices = cam1_device()
    assert len(devices) == 1
    killed = time.time()
    netbed.crash(world.hosts[first])  # its will; the new owner republishes discovery and state
    wait_until(lambda: shown_by(second), 30, "cam1 from its new owner, available and streaming in HA")
    measured(f"Home Assistant: cam1 shown by its new owner, streaming, after {first} was killed",
             time.time() - killed)
    wait_until(picture, 20, "cam1's picture in HA again")
    assert world.owners([second]) == {"cam1": second}
    assert cam1_entities() == before  # the same entities, the same ids (no camera_2, nothing orphaned)
    assert [d["id"] for d in cam1_device()] == [d["id"] for d in devices]  # the same device
