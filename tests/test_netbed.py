"""The network-namespace test bed (tests/support/netbed.py) with today's single hub: separate machines for
the broker, the boards, the hub, HAProxy and the viewers, the faults the cluster tests will use, and a
teardown that leaves nothing behind. The pattern for the cluster tests (``make test-cluster``)."""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from tests.support import netbed as nb
from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.procs import ROOT, HubProcess, Mosquitto, SimNode
from tests.support.waiting import wait_until

pytestmark = pytest.mark.cluster

FPS = 3  # the whole bed shares a busy 2-core machine: QQVGA at a few frames per second


@dataclass
class SingleHub:
    """A broker, boards (one simulated node each), one hub, HAProxy in front of it, a viewer host."""

    bed: nb.NetBed
    broker_host: nb.Host
    boards: list[nb.Host]
    hub_host: nb.Host
    proxy: nb.Host
    viewer: nb.Host
    broker: Mosquitto
    nodes: list[SimNode]
    hub: HubProcess
    lb: nb.HAProxy

    def stream(self, camera: str) -> str:
        return self.proxy.url(f"/cameras/{camera}/stream")


def single_hub(bed: nb.NetBed, cameras: int = 2) -> SingleHub:
    broker_host = bed.host("broker")
    boards = bed.hosts(*(f"board{i}" for i in range(1, cameras + 1)))
    hub_host, proxy, viewer = bed.hosts("hub1", "proxy", "viewer")
    broker = bed.mosquitto(broker_host)
    nodes = [bed.node(board, f"cam{i}", broker, fps=FPS, wait=False) for i, board in enumerate(boards, 1)]
    hub = bed.hub(hub_host, broker, proxies=[proxy], wait=False)
    for proc in (*nodes, hub):  # started together, waited for in turn
        proc.wait_ready()
    lb = bed.haproxy(proxy, [hub])
    wait_until(lambda: len([c for c in bed.get_json(viewer, proxy.url("/api/cameras"))
                            if c["state"] == "streaming"]) == cameras,
               timeout=20, what="every camera streaming, seen through HAProxy")
    return SingleHub(bed, broker_host, boards, hub_host, proxy, viewer, broker, nodes, hub, lb)


def test_hosts_are_separate_machines_on_the_benchmarking_network_only(netbed: nb.NetBed) -> None:
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    a, b = netbed.hosts("alpha", "beta")
    for host in (a, b):
        assert ipaddress.ip_address(host.address) in nb.NETWORK
        links = subprocess.run(["ip", "-n", host.netns, "-o", "link"], capture_output=True, text=True).stdout
        assert [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()] == ["lo", "eth0"]
        assert all("UP" in line.split("<")[1].split(">")[0] for line in links.splitlines())
        routes = subprocess.run(["ip", "-n", host.netns, "route"], capture_output=True, text=True).stdout
        assert routes.split()[0] == str(nb.NETWORK) and "default" not in routes, routes
        addresses = subprocess.run(["ip", "-n", host.netns, "-o", "addr"], capture_output=True, text=True).stdout
        assert "inet6" not in addresses, addresses  # IPv4 only: no link-local addresses
    # The root namespace got no new interface: both ends of each veth were made inside namespaces.
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout == root_links
    # Each host reaches the other through the switch, at its own address.
    with netbed.inside(b):
        server = socket.create_server((b.address, 7000))
    with server, netbed.inside(a), socket.create_connection((b.address, 7000), timeout=3) as client:
        peer, _ = server.accept()
        with peer:
            assert peer.getpeername()[0] == a.address
        assert client.getsockname()[0] == a.address


def test_viewers_through_haproxy_get_frames_and_the_board_sees_one_puller(netbed: nb.NetBed) -> None:
    world = single_hub(netbed)
    # One viewer in the viewer host: real JPEGs, each with its capture time.
    with netbed.inside(world.viewer), StreamReader(world.stream("cam1")) as reader:
        assert reader.status == 200
        for part in reader.parts(3):
            assert part.image().size == (160, 120)  # QQVGA, decoded
            assert abs(time.time() - part.timestamp) < 10
        # Many more through the viewer tool, longer than HAProxy's `timeout server` (10 s): a stream
        # that moves is never cut.
        report = netbed.watch(world.viewer, [world.stream("cam1"), world.stream("cam2")], viewers=10, seconds=12)
        status = netbed.get_json(world.viewer, world.nodes[0].url + "/status")
        hub_view = netbed.get_json(world.viewer, world.proxy.url("/api/cameras/cam1"))
    assert len(report["viewers"]) == 20
    for viewer in report["viewers"]:
        assert viewer["errors"] == {} and viewer["reconnects"] == 0, viewer
        assert viewer["fps"] >= 0.6 * FPS and viewer["frames"] >= 0.6 * FPS * 12, viewer
        assert viewer["age_ms"]["p95"] < 1000, viewer  # frames are fresh, not queued
    # However many watch, the board is pulled once: by the hub (its User-Agent), from the hub's host.
    assert [(v["user_agent"].split("/")[0], v["peer"].split(":")[0]) for v in status["viewers"]] == \
        [("camhub-hub", world.hub_host.address)]
    # The hub's viewers came through HAProxy (no X-Forwarded-For support yet: the peer is the proxy).
    assert {c["peer"].split(":")[0] for c in hub_view["clients"]} == {world.proxy.address}


def test_a_stalled_camera_keeps_its_viewers_through_haproxy(netbed: nb.NetBed) -> None:
    world = single_hub(netbed, cameras=1)
    frozen = 11.0  # seconds: longer than HAProxy's `timeout server` (10 s)

    def stall() -> None:
        time.sleep(1)
        netbed.freeze(world.boards[0])  # the board stops sending; its connection stays open
        time.sleep(frozen)
        netbed.thaw(world.boards[0])

    staller = threading.Thread(target=stall, daemon=True)
    staller.start()
    report = netbed.watch(world.viewer, [world.stream("cam1")], viewers=2, seconds=frozen + 3)
    staller.join(5)
    # The hub re-sends the last frame every 2 s while none arrives, so HAProxy never sees a silent server
    # and the viewers keep their streams through a stall longer than its timeout; then fresh frames again.
    for viewer in report["viewers"]:
        assert viewer["errors"] == {} and viewer["reconnects"] == 0, viewer
        assert viewer["max_gap_s"] < 3, viewer
        assert viewer["age_ms"]["max"] > 1000 * (frozen - 1), viewer  # the stalled frame, again and again


def check_timing(config: str) -> tuple[float, str]:
    """From the HAProxy config: the longest a silent server can stay in (inter + fall x min(timeout
    connect, inter) + (fall - 1) x fastinter, seconds) and the arithmetic."""
    words = next(line.split() for line in config.splitlines() if line.split()[:1] == ["default-server"])
    opts = dict(zip(words[1::2], words[2::2], strict=False))
    connect = next(line.split()[2] for line in config.splitlines() if line.split()[:2] == ["timeout", "connect"])

    def seconds(value: str) -> float:
        return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))

    inter, fall = seconds(opts["inter"]), int(opts["fall"])
    fast = seconds(opts.get("fastinter", opts["inter"]))
    bound = inter + fall * min(seconds(connect), inter) + (fall - 1) * fast
    return bound, f"inter {inter} + {fall} x {min(seconds(connect), inter)} + {fall - 1} x {fast}"


def test_haproxy_takes_a_silent_hub_out_and_viewers_return_with_it(netbed: nb.NetBed) -> None:
    world = single_hub(netbed)
    bound, why = check_timing(world.lb.config.read_text())
    url = world.stream("cam1")
    watcher = netbed.run(world.viewer, nb.viewer_tool([url], 3, 0, "--report-every", "0.5"), name="viewers")
    wait_until(lambda: any(e.get("streaming") == 3 for e in events(watcher.output())), timeout=15,
               what="three viewers streaming")
    with netbed.inside(world.viewer):
        reader = StreamReader(url)
    closed_at: list[float] = []

    def read_until_closed() -> None:
        try:
            while True:
                reader.read_part()
        except (EOFError, OSError):
            closed_at.append(time.time())

    thread = threading.Thread(target=read_until_closed, daemon=True)
    reader.sock.settimeout(30)
    thread.start()

    died = time.time()
    netbed.link_down(world.hub_host)  # the hub's machine goes silent: no FIN, no RST
    down = wait_until(lambda: world.lb.servers()["hub1"]["status"].startswith("DOWN") and time.time(),
                      timeout=bound + 10, interval=0.05, what="HAProxy marking the hub DOWN")
    print(f"silent hub marked DOWN after {down - died:.2f} s (bound {bound:.1f} s = {why})")
    assert down - died <= bound + 0.5
    # Its viewers are cut when it is marked down (on-marked-down shutdown-sessions), not after
    # `timeout server`; a new viewer is told at once that no hub is there.
    thread.join(5)
    assert closed_at and closed_at[0] - down < 1.0, (closed_at, down)
    assert netbed.http(world.viewer, url, timeout=3)[0] == 503
    reader.close()

    seen = len(events(watcher.output()))
    netbed.link_up(world.hub_host)
    wait_until(lambda: world.lb.servers()["hub1"]["status"] == "UP", timeout=15, what="the hub UP again")
    back = wait_until(lambda: any(e.get("streaming") == 3 for e in events(watcher.output())[seen:]) and time.time(),
                      timeout=20, what="the viewers streaming again")
    print(f"viewers streaming again {back - died:.1f} s after the hub went silent")
    watcher.stop(signal.SIGTERM)
    summary = events(watcher.output())[-1]
    assert summary["event"] == "summary"
    for viewer in summary["viewers"]:
        assert viewer["reconnects"] >= 1 and "closed by server" in viewer["errors"], viewer
        assert viewer["max_gap_s"] >= down - died - 1  # the outage, as each viewer lived it
        assert viewer["frames"] > 0


def events(output: str) -> list[dict]:
    """The viewer tool's JSON lines in a process log (other lines skipped)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def test_the_broker_hears_a_crash_at_once_and_a_silent_board_after_its_keepalive(netbed: nb.NetBed) -> None:
    keepalive = 2  # seconds, the firmware's smallest (CAMHUB_MQTT_KEEPALIVE_S)
    broker_host, crashed, silent, watcher = netbed.hosts("broker", "board1", "board2", "observer")
    broker = netbed.mosquitto(broker_host)
    env = {"CAMHUB_MQTT_KEEPALIVE_S": str(keepalive)}
    nodes = [netbed.node(crashed, "cam1", broker, fps=FPS, env=env, wait=False),
             netbed.node(silent, "cam2", broker, fps=FPS, env=env, wait=False)]
    for node in nodes:
        node.wait_ready()
    with netbed.inside(watcher):
        observer = Observer(broker.port, ["camhub/nodes/+/availability"], host=broker.host)
    try:
        for cam in ("cam1", "cam2"):
            observer.wait_for(f"camhub/nodes/{cam}/availability", lambda m: m.text == "online", timeout=15)
        # kill -9: the socket closes, so the will goes out at once (MQTT 3.1.1 §3.1.2.5).
        killed = time.time()
        netbed.crash(crashed)
        will = observer.wait_for("camhub/nodes/cam1/availability", lambda m: m.text == "offline", after=killed)
        # Link down: nothing closes, the broker only notices the silence 1.5 x keep-alive after the node's
        # last packet (§3.1.2.10), which went out up to keep-alive / 2 before (it sends stats that often).
        # Debian's mosquitto 2.0.11 looks for expired clients on a scan every 5 s (its keepalive.c), so up
        # to 5 s later: measured 3.8, 9.8 and 15.7 s after the link went down for a keep-alive of 2, 4, 8 s.
        cut = time.time()
        netbed.link_down(silent)
        silent_will = observer.wait_for("camhub/nodes/cam2/availability", lambda m: m.text == "offline",
                                        after=cut, timeout=1.5 * keepalive + 5 + 10)
    finally:
        observer.close()
    print(f"will after a crash {will.at - killed:.2f} s; after silence {silent_will.at - cut:.2f} s "
          f"(keep-alive {keepalive} s)")
    assert will.at - killed < 0.5 * keepalive
    assert keepalive <= silent_will.at - cut <= 1.5 * keepalive + 5 + 1


def test_faults_partition_limit_and_freeze(netbed: nb.NetBed) -> None:
    a, b, c = netbed.hosts("alpha", "beta", "gamma")
    with netbed.inside(b):
        server = socket.create_server((b.address, 7000))

    def reaches(src: nb.Host) -> bool:
        with netbed.inside(src):
            try:
                with socket.create_connection((b.address, 7000), timeout=1):
                    pass
            except OSError:
                return False
        server.accept()[0].close()
        return True

    with server:
        assert reaches(a) and reaches(c)
        netbed.partition([a], [b])  # frames between alpha and beta vanish in the switch; gamma unaffected
        assert not reaches(a) and reaches(c)
        netbed.heal()
        assert reaches(a)

        # A NIC limited to 8 Mbit/s: 2 MB take about 2 s instead of milliseconds.
        netbed.limit(a, "8mbit")
        received = threading.Event()

        def drain() -> None:
            peer, _ = server.accept()
            with peer:
                total = 0
                while total < 2_000_000 and (chunk := peer.recv(65536)):
                    total += len(chunk)
            received.set()

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        with netbed.inside(a), socket.create_connection((b.address, 7000), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"x" * 2_000_000)
            assert received.wait(30)
            took = time.monotonic() - started
        print(f"2 MB through an 8 Mbit/s limit took {took:.2f} s")
        assert took > 1.5
        netbed.unlimit(a)

    # SIGSTOP: a frozen host holds its connections but answers nothing; SIGCONT and it answers again.
    web = netbed.run(c, [sys.executable, "-m", "http.server", "8000", "--bind", c.address], name="web")
    wait_until(lambda: netbed.http(a, c.url("/", 8000))[0] == 200, timeout=10, what="the web server")
    netbed.freeze(c)
    with pytest.raises(OSError):
        netbed.http(a, c.url("/", 8000), timeout=1)
    netbed.thaw(c)
    assert netbed.http(a, c.url("/", 8000), timeout=5)[0] == 200
    netbed.crash(c)
    web.proc.wait(5)
    assert web.proc.returncode == -signal.SIGKILL and netbed.pids(c) == []


# -- teardown: nothing left, whatever happened ----------------------------------------------------------


def leftovers(names: list[str], inodes: set[int]) -> tuple[list[str], list[int]]:
    return [n for n in nb.namespaces() if n in names], nb.processes_in(inodes)


def busy_bed(bed: nb.NetBed) -> tuple[list[str], set[int]]:
    """A broker, a sleeping process and a frozen one in hosts of ``bed``; their namespaces' names and inodes."""
    broker_host, idle, frozen = bed.hosts("broker", "idle", "frozen")
    bed.mosquitto(broker_host)
    bed.run(idle, ["sleep", "600"])
    bed.run(frozen, ["sleep", "600"])
    bed.freeze(frozen)
    assert all(bed.pids(h) for h in (broker_host, idle, frozen))
    assert bed.made == [bed.switch] + [h.netns for h in (broker_host, idle, frozen)]
    return list(bed.made), set(bed.inodes)


def test_teardown_leaves_no_namespace_and_no_process_also_after_a_failure() -> None:
    if reason := nb.unavailable():
        pytest.skip(reason)
    with nb.NetBed() as bed:
        names, inodes = busy_bed(bed)
    assert leftovers(names, inodes) == ([], [])

    with pytest.raises(RuntimeError, match="the test failed"), nb.NetBed() as bed:
        names, inodes = busy_bed(bed)
        raise RuntimeError("the test failed")
    assert leftovers(names, inodes) == ([], [])


CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from tests.support.netbed import NetBed
    bed = NetBed().start()
    host = bed.host("idle")
    sleeper = bed.run(host, ["sleep", "600"])
    print(json.dumps({{"names": bed.made, "inodes": sorted(bed.inodes), "sleeper": sleeper.pid}}), flush=True)
    time.sleep(600)
""")


def start_child_bed() -> tuple[subprocess.Popen[str], dict]:
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT))], stdout=subprocess.PIPE,
                             text=True)
    line = child.stdout.readline() if child.stdout else ""
    if not line:
        child.kill()
        raise AssertionError(f"the child bed did not start (exit {child.wait(10)})")
    return child, json.loads(line)


def test_sigterm_to_the_test_process_tears_its_bed_down() -> None:
    if reason := nb.unavailable():
        pytest.skip(reason)
    child, made = start_child_bed()
    assert set(made["names"]) <= set(nb.namespaces())
    child.send_signal(signal.SIGTERM)
    assert child.wait(20) == -signal.SIGTERM  # handled, then ended by the signal as before
    assert leftovers(made["names"], set(made["inodes"])) == ([], [])


def test_a_crashed_runs_leftovers_are_removed_by_the_next_bed() -> None:
    if reason := nb.unavailable():
        pytest.skip(reason)
    child, made = start_child_bed()
    child.kill()  # SIGKILL: no handler runs, the namespace and its sleeper stay behind
    child.wait(10)
    assert set(made["names"]) <= set(nb.namespaces())
    assert running(made["sleeper"])
    with nb.NetBed() as bed:
        assert leftovers(made["names"], set(made["inodes"])) == ([], [])
        assert bed.switch in nb.namespaces()  # and the new bed is built
    assert not running(made["sleeper"])


def running(pid: int) -> bool:
    """A live process (a zombie waiting for its reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
