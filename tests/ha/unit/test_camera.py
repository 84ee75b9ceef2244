"""The integration set up in-process against a real hub that requires credentials: the camera entity, its
still and its stream source (HomeKit's), and what a hub that is unreachable or refuses the credentials
does to the entry. The live view through a real Home Assistant: tests/test_homeassistant_integration.py."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_socket
from homeassistant.components.camera import async_get_image, async_get_stream_source
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from PIL import Image
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.camhub as camhub_integration
from tests.support.procs import HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

PASSWORD = "camera-test-pw"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    pytest_socket.enable_socket()  # set up during some test's setup, before that test allows loopback
    broker = Mosquitto()
    node = SimNode("garage", broker.port, fps=5, frame_size="QQVGA", env={"CAMHUB_NODE_NAME": "Garage"})
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("camera-hub"),
                     env={"CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": PASSWORD})
    try:
        node.wait_ready()
        hub.wait_ready()
        wait_until(lambda: _streaming(hub), 20, "the camera streaming")
        yield hub
    finally:
        hub.stop()
        node.stop()
        broker.stop()


def _streaming(hub: HubProcess) -> bool:
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    return get_json(hub.url + "/api/cameras/garage", auth)["state"] == "streaming"


async def set_up(hass: HomeAssistant, url: str, password: str = PASSWORD) -> MockConfigEntry:
    entry = MockConfigEntry(domain="camhub", unique_id="camhub_hub", title="camhub",
                            data={"url": url, "username": "admin", "password": password})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def state_of(hass: HomeAssistant, entity_id: str) -> Any:
    for _ in range(100):  # the entity is added by a task of the entry's
        if (state := hass.states.get(entity_id)) is not None:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{entity_id} never appeared")


async def test_the_camera_entity_its_still_and_its_stream_source(hass: HomeAssistant, hub: HubProcess) -> None:
    entry = await set_up(hass, hub.url)
    assert entry.state is ConfigEntryState.LOADED
    state = await state_of(hass, "camera.garage")
    assert state.state == "idle" and state.attributes["hub_state"] == "streaming"
    assert state.attributes["frames_skipped"] == 0 and state.attributes["supported_features"] == 0
    image = await async_get_image(hass, "camera.garage")
    assert image.content_type == "image/jpeg" and Image.open(io.BytesIO(image.content)).size == (160, 120)
    source = await async_get_stream_source(hass, "camera.garage")
    assert source is not None and source.startswith(f"{hub.url}/cameras/garage/stream?token=")  # for players
    await hass.config_entries.async_unload(entry.entry_id)


async def test_an_unreachable_hub_is_retried(hass: HomeAssistant) -> None:
    entry = await set_up(hass, "http://127.0.0.1:9")
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_refused_credentials_ask_for_new_ones(hass: HomeAssistant, hub: HubProcess) -> None:
    entry = await set_up(hass, hub.url, password="old-password")
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler("camhub")
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_removing_the_entry_frees_the_entity_ids_before_the_hub_is_told(
        hass: HomeAssistant, hub: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub answers the cleared flag with its MQTT camera config; if ``camera.garage`` were still in the
    registry then, MQTT discovery would create ``camera.garage_2`` (Home Assistant clears an entry's entities
    only after the integration's ``async_remove_entry`` returns)."""
    entry = await set_up(hass, hub.url)
    await state_of(hass, "camera.garage")
    registry = er.async_get(hass)
    taken_when_told: list[list[str]] = []

    async def told(_hass: HomeAssistant, _entry: Any, _info: Any, live: bool) -> None:
        if not live:
            taken_when_told.append([e.entity_id for e in registry.entities.values() if e.platform == "camhub"])

    monkeypatch.setattr(camhub_integration, "_tell_hub", told)
    await hass.config_entries.async_remove(entry.entry_id)
    assert taken_when_told == [[]]
