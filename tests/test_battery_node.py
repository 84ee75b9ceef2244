"""A battery camera's node (``CAMHUB_MODE = "snapshot"``), on CPython and on the MicroPython Unix port:
each wake is ``code.py`` from the top (``camhub.sim.sleep``, with the stand-in ``alarm`` module), one
picture over MQTT, then deep sleep until its timer or its wake pin. No hub here: mosquitto, and the
node's messages as any subscriber sees them."""

from __future__ import annotations

import time

import pytest

from tests.support.battery import BatteryNode, jpeg_size
from tests.support.mqtt import Observer
from tests.support.procs import RUNTIMES, Mosquitto, running


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_it_wakes_on_its_timer_pushes_one_picture_and_sleeps(mosquitto: Mosquitto, observer: Observer,
                                                              runtime: str) -> None:
    node = BatteryNode(f"nestbox-{runtime}", mosquitto.port, interval=2, runtime=runtime, frame_size="QVGA")
    with running(node):
        started = time.time()
        first = node.next_wake(observer, started)
        second = node.next_wake(observer, first.at + 1)
        third = node.next_wake(observer, second.at + 1)
    announces = [m.json() for m in (first, second, third)]
    assert [a["wake"] for a in announces] == ["boot", "timer", "timer"]
    for announce in announces:
        assert announce["mode"] == "snapshot" and announce["interval_s"] == 2
        assert "stream_url" not in announce  # nothing to pull: it pushes
    # Timer wakes come an interval apart (plus the wake's own time), not sooner.
    assert second.at - first.at >= 2.0 and third.at - second.at >= 2.0
    pictures = [m for m in observer.on(node.topic("snapshot")) if not m.retain]
    assert len(pictures) >= 3
    for picture in pictures:
        assert jpeg_size(picture.payload) == (320, 240)
    # The broker keeps the latest picture (retained): a newcomer gets it at once.
    newcomer = Observer(mosquitto.port, [node.topic("snapshot")])
    try:
        assert jpeg_size(newcomer.wait_for(node.topic("snapshot")).payload) == (320, 240)
    finally:
        newcomer.close()
    # Sleep memory survives the deep sleep (the wake count, the last wake's length); RAM does not.
    stats = [m.json() for m in observer.on(node.topic("stats"))][:3]
    assert [s["wakes"] for s in stats] == [1, 2, 3]
    assert stats[0]["last_awake_ms"] is None and stats[1]["last_awake_ms"] > 0
    # A sleeping node is not offline: no "offline" ever, and "online" is what the broker keeps.
    assert {m.text for m in observer.on(node.topic("availability"))} == {"online"}
    assert "Traceback" not in node.output()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_its_wake_pin_wakes_it_before_its_timer(mosquitto: Mosquitto, observer: Observer, runtime: str) -> None:
    node = BatteryNode(f"gate-{runtime}", mosquitto.port, interval=600, runtime=runtime, wake_pin="A0")
    with running(node):
        first = node.next_wake(observer, time.time())
        assert first.json()["wake"] == "boot" and first.json()["wake_pin"] is True
        node.picture_after(observer, first.at)  # its last message: it goes to sleep now
        time.sleep(1.0)
        pressed = time.time()
        node.press()  # the PIR sees something
        woke = node.next_wake(observer, pressed, timeout=20)
        assert woke.json()["wake"] == "pin"
        node.picture_after(observer, woke.at)
    assert woke.at - pressed < 15  # the timer would have taken ten minutes


def _pending_setting_applies_at_the_next_wake(broker_port: int, observer: Observer, runtime: str,
                                              node_id: str) -> None:
    node = BatteryNode(node_id, broker_port, interval=3, runtime=runtime, frame_size="QVGA")
    with running(node):
        first = node.next_wake(observer, time.time())
        assert first.json()["frame_size"] == "QVGA"
        node.picture_after(observer, first.at)
        # While it sleeps: what the hub does for a battery camera, a retained set.
        queued_at = time.time()
        observer.publish(node.topic("set"), b'{"frame_size": "QQVGA", "jpeg_quality": 20}', retain=True)
        applied = node.next_wake(observer, queued_at)
        assert (applied.json()["frame_size"], applied.json()["jpeg_quality"]) == ("QQVGA", 20)
        assert jpeg_size(node.picture_after(observer, applied.at).payload) == (160, 120)
        # The node took it: the broker keeps no set for the wakes to come (an empty retained message).
        observer.wait_for(node.topic("set"), lambda m: m.payload == b"", after=queued_at)
        newcomer = Observer(broker_port, [node.topic("set")])
        try:
            time.sleep(1.0)
            assert [m for m in newcomer.on(node.topic("set")) if m.payload] == []
        finally:
            newcomer.close()
        # It lasts: deep sleep loses RAM, but the node keeps its changed settings in sleep memory.
        later = node.next_wake(observer, applied.at + 1)
        assert later.json()["frame_size"] == "QQVGA" and later.json()["wake"] == "timer"
        assert jpeg_size(node.picture_after(observer, later.at).payload) == (160, 120)
    assert "set applied" in node.output()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_pending_setting_applies_at_the_next_wake_on_mosquitto(mosquitto: Mosquitto, observer: Observer,
                                                                   runtime: str) -> None:
    _pending_setting_applies_at_the_next_wake(mosquitto.port, observer, runtime, f"mailbox-{runtime}")


def test_a_refused_setting_is_cleared_and_the_node_wakes_on(mosquitto: Mosquitto, observer: Observer) -> None:
    node = BatteryNode("garden", mosquitto.port, interval=2)
    with running(node):
        first = node.next_wake(observer, time.time())
        node.picture_after(observer, first.at)
        queued_at = time.time()
        observer.publish(node.topic("set"), b'{"frame_size": "HUGE"}', retain=True)
        woke = node.next_wake(observer, queued_at)
        assert woke.json()["frame_size"] == "QVGA"
        stats = observer.wait_for(node.topic("stats"), after=woke.at - 0.5).json()
        assert stats["set_rejected"] == 1 and stats["set_applied"] == 0
        observer.wait_for(node.topic("set"), lambda m: m.payload == b"", after=queued_at)
        node.picture_after(observer, woke.at)
    assert "set ignored (frame_size must be one of" in node.output()


def test_a_wake_that_fails_still_ends_in_deep_sleep(observer: Observer) -> None:
    """No broker: the wake fails, is counted in sleep memory, and the node sleeps until its next wake
    rather than stay up retrying (a battery would not last)."""
    from tests.support.procs import free_port

    node = BatteryNode("lonely", free_port(), interval=1)
    with running(node):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (node.output().count("this wake failed") < 2
                                               or node.output().count("deep sleep for 1 s") < 2):
            time.sleep(0.2)  # the second wake's failure, then its sleep (a line later)
        output = node.output()
    assert "this wake failed (1 in a row)" in output and "this wake failed (2 in a row)" in output
    assert output.count("deep sleep for 1 s") >= 2
