"""The hub's MQTT link under pressure: a bounded publish queue, quiet logs, a frozen broker noticed."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest

from camhub.hub.mqtt.link import LinkSettings, MqttLink
from camhub.hub.mqtt.topics import Topics
from tests.support.mqtt import Observer
from tests.support.procs import HubProcess, Mosquitto
from tests.support.waiting import get_json, wait_until


async def _connected_link(mosquitto: Mosquitto, tmp_path: Path) -> tuple[MqttLink, asyncio.Task[None]]:
    link = MqttLink(LinkSettings("127.0.0.1", mosquitto.port), Topics())
    task = asyncio.create_task(link.run())
    for _ in range(100):
        if link.connected:
            break
        await asyncio.sleep(0.05)
    assert link.connected
    return link, task


async def test_a_burst_of_publishes_is_bounded_and_keeps_the_newest_state(
        mosquitto: Mosquitto, observer: Observer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    link, task = await _connected_link(mosquitto, tmp_path)
    try:
        tasks_before = len(asyncio.all_tasks())
        for i in range(5000):
            link.publish(f"camhub/hub/cameras/cam{i % 10}/state", {"seq": i}, retain=True)
            link.publish("camhub/hub/cameras/cam0/events", {"event": "connect", "seq": i})
        # One sender, not a task per message; at most one pending state per topic.
        assert len(asyncio.all_tasks()) <= tasks_before + 1
        assert link.pending <= 10 + 1000
        await link.flush(20)
        assert link.pending == 0
        for cam in range(10):
            last = 4990 + cam
            observer.wait_for(f"camhub/hub/cameras/cam{cam}/state", lambda m, n=last: m.json() == {"seq": n})
        states = observer.on("camhub/hub/cameras/+/state")
        assert len(states) < 5000  # superseded states were never sent
        assert link.dropped["queue_full"] >= 5000 - 1000  # events beyond the bound: dropped, counted
        assert link.published >= 10
        assert not [r for r in caplog.records if "pending publish calls" in r.getMessage()]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_frozen_broker_is_reported_as_not_connected_within_seconds(mosquitto: Mosquitto, tmp_path: Path) -> None:
    hub = HubProcess(mosquitto.port, tmp_path).wait_ready()
    try:
        wait_until(lambda: get_json(hub.url + "/api/hub")["mqtt"]["connected"], what="MQTT connected")
        mosquitto.proc.send_signal(signal.SIGSTOP)  # accepts TCP, answers nothing: a frozen broker
        try:
            wait_until(lambda: not get_json(hub.url + "/api/hub")["mqtt"]["connected"], timeout=10,
                       what="the frozen broker reported as not connected")
        finally:
            mosquitto.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: get_json(hub.url + "/api/hub")["mqtt"]["connected"], timeout=40,
                   what="MQTT back after the broker thaws")
    finally:
        hub.stop()


async def test_a_cancel_that_lands_as_a_publish_is_acknowledged_still_stops_the_sender() -> None:
    """aiomqtt (2.5) awaits each acknowledgement through ``asyncio.wait_for``, which on Python 3.11 returns
    the result and drops a cancel that lands in the loop iteration the acknowledgement arrives in (CPython
    gh-86296, fixed in 3.12). The sender then waited for work for ever, and the link's task group with it:
    a hub whose broker connection broke could not stop. The client here is aiomqtt's publish reduced to that
    wait (the race cannot be timed through a real broker)."""
    link = MqttLink(LinkSettings(), Topics())
    link.publish("camhub/hub/state", {"cameras": 0}, retain=True)
    acknowledged = asyncio.Event()

    class Client:
        async def publish(self, *_args: object, **_kwargs: object) -> None:
            await asyncio.wait_for(acknowledged.wait(), 3)

    sender = asyncio.create_task(link._send(Client()))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)  # the sender is waiting for its acknowledgement
    acknowledged.set()
    sender.cancel()  # the task group cancels the sender as the acknowledgement arrives
    done, _ = await asyncio.wait([sender], timeout=2)
    assert sender in done and sender.cancelled()
