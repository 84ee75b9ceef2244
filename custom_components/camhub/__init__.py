"""camhub: every camera of a camhub hub, live in Home Assistant (one camera entity per hub camera).

The hub's own MQTT discovery already gives each camera a device with its sensors and controls; this
integration adds the live camera entity to that same device (the hub's API hands out the device block
MQTT discovery uses) and tells the hub so over MQTT (a retained ``on`` on the hub's
``integration_topic``), which makes the hub drop its MQTT still-picture camera: one camera entity per
device. Cameras are read from the hub's API every ``SCAN_INTERVAL``; entities come and go with them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_PASSWORD, CONF_URL, CONF_USERNAME, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .const import DOMAIN, MQTT_DOMAIN, SCAN_INTERVAL
from .hub import HubAuthError, HubClient, HubError, hub_id
from .relay import RelayStats

log = logging.getLogger(__name__)
PLATFORMS = [Platform.CAMERA]
CONF_INTEGRATION_TOPIC = "integration_topic"  # kept in the entry: removing it clears the flag on the hub
RETELL_S = 60.0  # the hub has not heard the flag (a broker restarted without persistence): say it again


@dataclass
class HubData:
    """What the entry's platforms share: the hub's client, its info, the camera list and relay counters."""

    client: HubClient
    info: dict[str, Any]
    coordinator: DataUpdateCoordinator[dict[str, dict[str, Any]]] | None = None
    stats: dict[str, RelayStats] = field(default_factory=dict)
    told_at: float = float("-inf")


def device_info(block: dict[str, Any]) -> dict[str, Any]:
    """A device block from the hub (MQTT discovery's form) as Home Assistant's DeviceInfo, under the MQTT
    domain: the same device MQTT discovery creates, whichever of the two comes first."""
    identifiers = block.get("identifiers", [])
    info: dict[str, Any] = {"identifiers": {(MQTT_DOMAIN, i) for i in identifiers if isinstance(i, str)}}
    for key in ("name", "manufacturer", "model", "sw_version", "hw_version", "configuration_url"):
        if isinstance(block.get(key), str):
            info[key] = block[key]
    if isinstance(block.get("via_device"), str):
        info["via_device"] = (MQTT_DOMAIN, block["via_device"])
    return info


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    client = HubClient(async_get_clientsession(hass), entry.data[CONF_URL], entry.data.get(CONF_USERNAME),
                       entry.data.get(CONF_PASSWORD))
    data = HubData(client, {})

    async def update() -> dict[str, dict[str, Any]]:
        """The cameras by id; the hub's info refreshed, and the flag said again if the hub lost it."""
        try:
            data.info = await client.info()
            cameras = await client.cameras()
        except HubAuthError as exc:
            raise ConfigEntryAuthFailed(str(exc)) from exc
        except HubError as exc:
            raise UpdateFailed(str(exc)) from exc
        if hub_id(data.info) != entry.unique_id:
            raise UpdateFailed(f"{client.url} is hub {hub_id(data.info)!r} now, not {entry.unique_id!r}")
        if not data.info["home_assistant"].get("integration") and time.monotonic() - data.told_at > RETELL_S:
            data.told_at = time.monotonic()
            entry.async_create_background_task(hass, _tell_hub(hass, entry, data.info, True), "camhub flag")
        return cameras

    data.coordinator = DataUpdateCoordinator(hass, log, name=entry.title, update_method=update,
                                             update_interval=SCAN_INTERVAL)
    await data.coordinator.async_config_entry_first_refresh()  # not ready / reauth when it fails
    dr.async_get(hass).async_get_or_create(config_entry_id=entry.entry_id,
                                           **device_info(data.info["home_assistant"]["device"]))
    hass.data.setdefault(DOMAIN, {})[entry.entry_id] = data
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        hass.data[DOMAIN].pop(entry.entry_id, None)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """The integration is deleted for this hub: the hub publishes its MQTT camera entities again.

    Our entities leave the registry first. Home Assistant removes them only after this returns, and the
    hub's MQTT camera configs can arrive before that (a busy Home Assistant, a quick hub): MQTT discovery
    would then find ``camera.garage`` taken and create ``camera.garage_2``."""
    registry = er.async_get(hass)
    for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
        registry.async_remove(entity.entity_id)
    await _tell_hub(hass, entry, {"home_assistant": {"integration_topic": entry.data.get(CONF_INTEGRATION_TOPIC)}},
                    False)


async def async_remove_config_entry_device(hass: HomeAssistant, entry: ConfigEntry, device: dr.DeviceEntry) -> bool:
    """A device may be deleted by hand once the hub no longer has its camera."""
    data: HubData | None = hass.data.get(DOMAIN, {}).get(entry.entry_id)
    if data is None:
        return True
    cameras = data.coordinator.data.values() if data.coordinator else []
    live = {(MQTT_DOMAIN, i) for c in cameras for i in (c.get("ha_device") or {}).get("identifiers", [])}
    return not device.identifiers & (live | device_info(data.info["home_assistant"]["device"])["identifiers"])


async def _tell_hub(hass: HomeAssistant, entry: ConfigEntry, info: dict[str, Any], live: bool) -> None:
    """Set (a retained ``on``) or clear the hub's integration flag, if Home Assistant has MQTT: the hub then
    stops (or resumes) publishing its MQTT still camera per camera."""
    topic = info["home_assistant"].get("integration_topic")
    if not isinstance(topic, str) or "mqtt" not in hass.config.components:
        return
    if live and entry.data.get(CONF_INTEGRATION_TOPIC) != topic:
        hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_INTEGRATION_TOPIC: topic})
    from homeassistant.components import mqtt  # imported only when MQTT is set up: not a dependency

    try:
        if await mqtt.async_wait_for_mqtt_client(hass):
            await mqtt.async_publish(hass, topic, "on" if live else "", qos=1, retain=True)
            return
        problem = "MQTT is not connected"
    except Exception as exc:  # noqa: BLE001 (any MQTT failure: the hub keeps its still camera; say why)
        problem = str(exc)
    log.warning("could not tell the hub on %s that the integration is %s: %s", topic,
                "set up" if live else "removed", problem)
