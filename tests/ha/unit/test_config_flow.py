"""The config flow's branches, in-process (fast): a typed URL, MQTT discovery payloads, a hub that moved,
reauth against the wrong hub. The whole flow in a real Home Assistant over its REST API, with a hub that
requires credentials: tests/test_homeassistant_integration.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import pytest_socket
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.support.procs import HubProcess, Mosquitto
from tests.support.waiting import get_json

DOMAIN = "camhub"
LOCKED_PASSWORD = "unit-test-pw"


@pytest.fixture(scope="module")
def locked_hub(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub that requires its user name and password (CAMHUB_AUTH on), under its own topic prefix."""
    pytest_socket.enable_socket()  # set up during some test's setup, before that test allows loopback
    hub = HubProcess(broker.port, tmp_path_factory.mktemp("locked-hub"), env={
        "CAMHUB_AUTH": "on", "CAMHUB_HUB_PASSWORD": LOCKED_PASSWORD, "CAMHUB_TOPIC_PREFIX": "locked"})
    yield hub.wait_ready()
    hub.stop()


def discovery(payload: str) -> MqttServiceInfo:
    return MqttServiceInfo(topic="camhub/hub/info", payload=payload, qos=0, retain=True,
                           subscribed_topic="camhub/hub/info", timestamp=0)


async def hub_info(hass: HomeAssistant, hub: HubProcess) -> str:
    """What the hub publishes, retained, on camhub/hub/info (the same block as /api/hub's)."""
    info = (await hass.async_add_executor_job(get_json, hub.url + "/api/hub"))["home_assistant"]
    info.pop("integration")
    return json.dumps(info)


async def test_a_hub_that_asks_for_no_credentials_is_added_by_its_url(hass: HomeAssistant, open_hub) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    assert result["type"] == FlowResultType.FORM and result["step_id"] == "user"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"url": "ftp://127.0.0.1/"})
    assert result["errors"] == {"url": "invalid_url"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"url": open_hub.url + "/"})
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["data"] == {"url": open_hub.url}  # no credentials kept for a hub that asks for none
    assert result["result"].unique_id == "camhub_hub" and result["title"] == "camhub"


async def test_a_hub_that_asks_for_credentials_keeps_them(hass: HomeAssistant, locked_hub) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"url": locked_hub.url})
    assert result["errors"] == {"base": "invalid_auth"}  # it wants them
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"url": locked_hub.url, "username": "admin", "password": "wrong"})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"url": locked_hub.url, "username": "admin", "password": LOCKED_PASSWORD})
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["data"] == {"url": locked_hub.url, "username": "admin", "password": LOCKED_PASSWORD}
    assert result["result"].unique_id == "locked_hub" and result["title"] == "camhub locked"


@pytest.mark.parametrize("payload", [
    "",  # the retained info cleared
    "{not json",
    json.dumps({"url": "file:///etc/passwd", "device": {"identifiers": ["camhub_hub"]}}),
    json.dumps({"url": "http://127.0.0.1:8000", "device": {}}),
    json.dumps(["a", "list"]),
])
async def test_an_mqtt_announcement_that_is_not_a_hubs_is_refused(hass: HomeAssistant, payload: str) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "mqtt"}, data=discovery(payload))
    assert result["type"] == FlowResultType.ABORT and result["reason"] == "invalid_discovery_info"


async def test_a_hub_found_over_mqtt_asks_only_for_its_credentials(hass: HomeAssistant, open_hub) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "mqtt"},
                                                       data=discovery(await hub_info(hass, open_hub)))
    assert result["type"] == FlowResultType.FORM and result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"url": open_hub.url}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] == FlowResultType.CREATE_ENTRY and result["data"] == {"url": open_hub.url}


async def test_a_hub_that_moved_is_followed(hass: HomeAssistant, open_hub) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id="camhub_hub", data={"url": "http://127.0.0.1:9"})
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "mqtt"},
                                                       data=discovery(await hub_info(hass, open_hub)))
    assert result["type"] == FlowResultType.ABORT and result["reason"] == "already_configured"
    assert entry.data["url"] == open_hub.url


async def test_another_hub_at_the_address_is_refused(hass: HomeAssistant, open_hub, other_hub) -> None:
    # found over MQTT as camhub_hub, but the address now answers as another hub
    info = json.loads(await hub_info(hass, open_hub))
    info["url"] = other_hub.url
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "mqtt"},
                                                       data=discovery(json.dumps(info)))
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] == FlowResultType.ABORT and result["reason"] == "wrong_hub"
    # and when new credentials are given for an entry whose address another hub now answers
    entry = MockConfigEntry(domain=DOMAIN, unique_id="camhub_hub", data={"url": other_hub.url})
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": "reauth", "entry_id": entry.entry_id}, data=entry.data)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"username": "admin",
                                                                                "password": "x"})
    assert result["type"] == FlowResultType.ABORT and result["reason"] == "wrong_hub"
