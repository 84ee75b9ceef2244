"""The node's MQTT availability: online, the last will after a crash, offline on a clean stop (both
on CPython and on the MicroPython Unix port), and streaming that carries on while the broker is away."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.support.mjpeg_client import StreamReader
from tests.support.mqtt import Observer
from tests.support.mqtt_gate import SubscribeGate
from tests.support.procs import RUNTIMES, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

FAST_MQTT = {"CAMHUB_MQTT_KEEPALIVE_S": "2", "CAMHUB_STATS_INTERVAL_S": "1"}


def _availability(observer: Observer, node_id: str, text: str, after: float = 0.0, timeout: float = 10.0) -> float:
    return observer.wait_for(f"camhub/nodes/{node_id}/availability", lambda m: m.text == text,
                             timeout=timeout, after=after).at


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_killed_node_goes_offline_by_its_last_will(mosquitto: Mosquitto, observer: Observer, runtime: str) -> None:
    node_id = f"crash-{runtime}"
    node = SimNode(node_id, mosquitto.port, fps=5, frame_size="QQVGA", env=FAST_MQTT, runtime=runtime)
    try:
        node.wait_ready()
        online_at = _availability(observer, node_id, "online")
        killed_at = time.time()
        node.kill()
        _availability(observer, node_id, "offline", after=max(online_at, killed_at - 0.5))
        retained = Observer(mosquitto.port, [f"camhub/nodes/{node_id}/availability"])
        try:  # a newcomer sees the retained state
            assert retained.wait_for(f"camhub/nodes/{node_id}/availability").text == "offline"
        finally:
            retained.close()
    finally:
        node.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_clean_stop_says_offline_and_exits_zero(runtime: str) -> None:
    node_id = f"tidy-{runtime}"
    broker = Mosquitto(log=True)
    observer = Observer(broker.port, ["camhub/#"])
    node = SimNode(node_id, broker.port, fps=5, frame_size="QQVGA", env=FAST_MQTT, runtime=runtime)
    try:
        node.wait_ready()
        _availability(observer, node_id, "online")
        with StreamReader(node.url + "/stream") as reader:
            reader.read_part()
            stopped_at = time.time()
            assert node.stop(signal.SIGTERM) == 0
            _availability(observer, node_id, "offline", after=stopped_at - 0.5)
        assert "Traceback" not in node.output()
        # The node itself said goodbye (a PUBLISH of the 7-byte "offline", then a DISCONNECT), rather than
        # leaving it to the broker's last will: a will is what subscribers get after a crash.
        log = broker.log_text()
        goodbye = re.search(rf"Received PUBLISH from (\S+) \([^)]*'camhub/nodes/{node_id}/availability', \.\.\. "
                            r"\(7 bytes\)\)", log)
        assert goodbye, "the node did not publish offline itself"
        assert f"Received DISCONNECT from {goodbye.group(1)}" in log, "the node did not disconnect cleanly"
    finally:
        node.stop()
        observer.close()
        broker.stop()


def test_sigint_stops_cleanly_too(mosquitto: Mosquitto, observer: Observer) -> None:
    node = SimNode("ctrlc", mosquitto.port, fps=5, frame_size="QQVGA", env=FAST_MQTT)
    node.wait_ready()
    _availability(observer, "ctrlc", "online")
    stopped_at = time.time()
    assert node.stop(signal.SIGINT) == 0
    _availability(observer, "ctrlc", "offline", after=stopped_at - 0.5)


def test_stream_keeps_serving_while_the_broker_is_down_and_presence_returns(mosquitto: Mosquitto) -> None:
    node = SimNode("steady", mosquitto.port, fps=10, frame_size="QQVGA", env=FAST_MQTT)
    second = None
    try:
        node.wait_ready()
        wait_until(lambda: get_json(node.url + "/status")["mqtt"]["connected"], what="MQTT connected")
        with StreamReader(node.url + "/stream") as reader:
            reader.read_part()
            mosquitto.stop()
            wait_until(lambda: not get_json(node.url + "/status")["mqtt"]["connected"], what="MQTT loss noticed")
            first = reader.read_part()
            parts = reader.parts(15)  # 1.5 s of stream with no broker
            assert parts[-1].seq - first.seq <= 20
        # The broker comes back on the same port: the node reconnects and says online again.
        second = Mosquitto(port=mosquitto.port)
        observer = Observer(second.port, ["camhub/#"])
        try:
            assert observer.wait_for("camhub/nodes/steady/availability", lambda m: m.text == "online",
                                     timeout=20).text == "online"
            assert observer.wait_for("camhub/nodes/steady/announce", timeout=5).json()["id"] == "steady"
        finally:
            observer.close()
        status = get_json(node.url + "/status")
        assert status["mqtt"]["connects"] >= 2 and status["task_restarts"] == {}
    finally:
        node.stop()
        if second is not None:
            second.stop()



@pytest.mark.parametrize("runtime", RUNTIMES)
def test_overwritten_announce_and_availability_are_reasserted(mosquitto: Mosquitto, observer: Observer,
                                                             runtime: str) -> None:
    """A spoofed retained empty announce or ``offline`` from another client does not stick."""
    node_id = f"owner-{runtime}"
    node = SimNode(node_id, mosquitto.port, fps=5, frame_size="QQVGA", env=FAST_MQTT, runtime=runtime)
    announce_topic = f"camhub/nodes/{node_id}/announce"
    try:
        node.wait_ready()
        _availability(observer, node_id, "online")
        original = observer.wait_for(announce_topic).payload
        spoofed_at = time.time()
        observer.publish(announce_topic, b"", retain=True)
        observer.wait_for(announce_topic, lambda m: m.payload == original, timeout=10, after=spoofed_at)
        spoofed_at = time.time() + 0.01
        time.sleep(2.1)  # re-assertions are at most one per 2 s
        observer.publish(f"camhub/nodes/{node_id}/availability", "offline", retain=True)
        _availability(observer, node_id, "online", after=spoofed_at, timeout=10)
        newcomer = Observer(mosquitto.port, [f"camhub/nodes/{node_id}/#"])
        try:  # what the broker keeps is the node's own again
            assert newcomer.wait_for(announce_topic).payload == original
            assert newcomer.wait_for(f"camhub/nodes/{node_id}/availability").text == "online"
        finally:
            newcomer.close()
        assert get_json(node.url + "/status")["mqtt"]["reasserts"] == 2
    finally:
        node.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_announce_deleted_before_the_node_subscribes_comes_back(mosquitto: Mosquitto, observer: Observer,
                                                                 runtime: str) -> None:
    """A retained empty announce sent between the node's publish and its subscribe deletes the announce, so
    no message ever tells the node; it notices its own announce did not come back and re-asserts it."""
    node_id = f"unseen-{runtime}"
    announce_topic = f"camhub/nodes/{node_id}/announce"
    gate = SubscribeGate(mosquitto.port, announce_topic)  # the node reaches the broker through it
    node = SimNode(node_id, gate.port, fps=5, frame_size="QQVGA", runtime=runtime,
                   env={**FAST_MQTT, "CAMHUB_MQTT_TIMEOUT_MS": "1000"})  # it waits 4 s for a SUBACK
    try:
        original = observer.wait_for(announce_topic, timeout=20).payload
        assert gate.held.wait(10), "the node should subscribe after announcing"
        cleared_at = time.time()
        observer.publish(announce_topic, b"", retain=True)
        observer.wait_for(announce_topic, lambda m: m.payload == b"", after=cleared_at)  # the broker deleted it
        gate.release()
        observer.wait_for(announce_topic, lambda m: m.payload == original, timeout=10, after=cleared_at)
        newcomer = Observer(mosquitto.port, [announce_topic])
        try:  # what the broker keeps is the announce again
            assert newcomer.wait_for(announce_topic).payload == original
        finally:
            newcomer.close()
    finally:
        gate.close()
        node.stop()
