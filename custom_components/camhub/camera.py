"""One camera entity per hub camera: the live view through the relay, stills from the hub's cache."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from . import HubData, device_info
from .const import DOMAIN, MQTT_DOMAIN, MQTT_STILL_WAIT_S
from .hub import HubAuthError, HubError
from .relay import Relay, RelayStats

log = logging.getLogger(__name__)


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback) -> None:
    data: HubData = hass.data[DOMAIN][entry.entry_id]
    cameras = HubCameras(hass, entry, data, async_add_entities)
    cameras.sync()
    assert data.coordinator is not None
    entry.async_on_unload(data.coordinator.async_add_listener(cameras.sync))


class HubCameras:
    """Keeps one entity per camera the hub has: adds new ones, removes (with their device) the ones it dropped."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, data: HubData,
                 add_entities: AddEntitiesCallback) -> None:
        self.hass = hass
        self.entry = entry
        self.data = data
        self._add_entities = add_entities
        self._wanted: set[str] = set()  # camera ids with an entity, or one on its way

    @callback
    def sync(self) -> None:
        assert self.data.coordinator is not None
        current = self.data.coordinator.data or {}
        for camera_id in sorted(current.keys() - self._wanted):
            self._wanted.add(camera_id)
            self.entry.async_create_background_task(self.hass, self._add(camera_id), f"camhub: add {camera_id}")
        for camera_id in sorted(self._wanted - current.keys()):
            self._wanted.discard(camera_id)
            self._remove(camera_id)

    def _device(self, camera_id: str) -> dict[str, Any]:
        assert self.data.coordinator is not None
        camera = self.data.coordinator.data.get(camera_id, {})
        if isinstance(camera.get("ha_device"), dict):
            return device_info(camera["ha_device"])
        return {"identifiers": {(DOMAIN, f"{self.entry.unique_id}_{camera_id}")}, "name": camera.get("name", camera_id),
                "manufacturer": "camhub"}

    async def _add(self, camera_id: str) -> None:
        device = self._device(camera_id)
        await self._mqtt_still_gone(device, camera_id)
        if camera_id in self._wanted:
            self._add_entities([HubCamera(self.entry, self.data, camera_id, device)])

    async def _mqtt_still_gone(self, device: dict[str, Any], camera_id: str) -> None:
        """Wait until the device has no MQTT camera entity (the hub removes it once it hears the integration's
        flag), so this camera's entity takes the plain ``camera.<name>`` id instead of ``camera.<name>_2``."""
        devices, entities = dr.async_get(self.hass), er.async_get(self.hass)
        deadline = time.monotonic() + MQTT_STILL_WAIT_S
        while True:
            found = devices.async_get_device(identifiers=device["identifiers"])
            stills = [e.entity_id for e in (er.async_entries_for_device(entities, found.id, True) if found else [])
                      if e.domain == "camera" and e.platform == MQTT_DOMAIN]
            if not stills:
                return
            if time.monotonic() > deadline:
                log.warning("%s still has the hub's MQTT camera (%s): is the hub too old for this integration, or "
                            "on another MQTT broker? Adding the live camera beside it", camera_id, ", ".join(stills))
                return
            await asyncio.sleep(0.25)

    @callback
    def _remove(self, camera_id: str) -> None:
        entities = er.async_get(self.hass)
        entity_id = entities.async_get_entity_id("camera", DOMAIN, f"{self.entry.unique_id}_{camera_id}")
        entry = entities.async_get(entity_id) if entity_id else None
        if entry is None:
            return
        entities.async_remove(entry.entity_id)
        self.data.stats.pop(camera_id, None)
        if not entry.device_id:
            return
        devices = dr.async_get(self.hass)
        if er.async_entries_for_device(entities, entry.device_id, True):
            # MQTT discovery's entities are still there: the device goes when they do (MQTT lets go of it then)
            devices.async_update_device(entry.device_id, remove_config_entry_id=self.entry.entry_id)
        else:
            # they went first, and MQTT kept the device for this entity: nothing is left on it
            devices.async_remove_device(entry.device_id)


class HubCamera(CoordinatorEntity, Camera):  # type: ignore[misc]
    """A hub camera: live MJPEG through the frame-aware relay, stills from the hub's cached snapshot."""

    _attr_has_entity_name = True
    _attr_name = None  # the device's name: camera.<camera name>
    _attr_brand = "camhub"
    _attr_supported_features = CameraEntityFeature(0)  # MJPEG only: HLS and WebRTC cannot carry it
    _unrecorded_attributes = frozenset({"viewers", "frames_sent", "frames_skipped"})

    def __init__(self, entry: ConfigEntry, data: HubData, camera_id: str, device: dict[str, Any]) -> None:
        CoordinatorEntity.__init__(self, data.coordinator)
        Camera.__init__(self)
        self.entry = entry
        self.client = data.client
        self.camera_id = camera_id
        self.stats = data.stats.setdefault(camera_id, RelayStats())
        self._attr_unique_id = f"{entry.unique_id}_{camera_id}"
        self._attr_device_info = device  # type: ignore[assignment]

    @property
    def _camera(self) -> dict[str, Any] | None:
        return self.coordinator.data.get(self.camera_id) if self.coordinator.data else None

    @property
    def available(self) -> bool:
        camera = self._camera
        return super().available and camera is not None and camera.get("state") != "offline"

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        camera = self._camera or {}
        return {"hub_state": camera.get("state"), "viewers": self.stats.viewers,
                "frames_sent": self.stats.frames_out, "frames_skipped": self.stats.frames_skipped}

    def _reauth(self) -> None:
        self.entry.async_start_reauth(self.hass)

    async def async_camera_image(self, width: int | None = None, height: int | None = None) -> bytes | None:
        try:
            return await self.client.snapshot(self.camera_id)
        except HubAuthError:
            self._reauth()
            return None

    async def stream_source(self) -> str | None:
        """The hub's MJPEG URL for this camera, with its view token (HomeKit and other players)."""
        try:
            return await self.client.stream_url(self.camera_id)
        except HubAuthError:
            self._reauth()
        except HubError as exc:
            log.debug("%s: no stream URL: %s", self.entity_id, exc)
        return None

    async def handle_async_mjpeg_stream(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("fps")
        try:
            fps = None if raw is None else float(raw)
        except ValueError:
            fps = -1.0
        if fps is not None and not 0 < fps <= 120:
            return web.Response(status=400, text="fps must be a number in (0, 120]\n")
        relay = Relay(lambda: self.client.open_stream(self.camera_id, fps), self._reauth, self.stats, self.entity_id)
        return await relay.serve(request)
