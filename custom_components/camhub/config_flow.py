"""Setting camhub up: a hub found over MQTT (its retained ``camhub/hub/info``) or a typed URL; the hub's
credentials once (none for a hub that asks for none); new ones when the hub refuses the old (reauth)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.const import CONF_PASSWORD, CONF_URL, CONF_USERNAME
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .const import DOMAIN
from .hub import HubAuthError, HubClient, HubError, NotAHub, hub_id, normalize_url

CREDENTIALS = vol.Schema({vol.Optional(CONF_USERNAME): str, vol.Optional(CONF_PASSWORD): str})


class CamhubConfigFlow(ConfigFlow, domain=DOMAIN):
    VERSION = 1

    def __init__(self) -> None:
        self._url: str | None = None
        self._reauth_entry: ConfigEntry | None = None

    async def _probe(self, url: str, user_input: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """The hub's info with these credentials, or the error to show."""
        client = HubClient(async_get_clientsession(self.hass), url, user_input.get(CONF_USERNAME),
                           user_input.get(CONF_PASSWORD))
        try:
            return await client.info(), None
        except HubAuthError:
            return None, "invalid_auth"
        except NotAHub:
            return None, "not_camhub"
        except HubError:
            return None, "cannot_connect"

    async def _create(self, url: str, info: dict[str, Any], user_input: Mapping[str, Any]) -> Any:
        await self.async_set_unique_id(hub_id(info))
        self._abort_if_unique_id_configured(updates={CONF_URL: url})
        data = {CONF_URL: url}
        if user_input.get(CONF_USERNAME):
            data |= {CONF_USERNAME: user_input[CONF_USERNAME], CONF_PASSWORD: user_input.get(CONF_PASSWORD, "")}
        return self.async_create_entry(title=info["home_assistant"]["device"].get("name") or "camhub", data=data)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> Any:
        """A hub by its URL."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                url = normalize_url(user_input[CONF_URL])
            except ValueError:
                errors[CONF_URL] = "invalid_url"
            else:
                info, error = await self._probe(url, user_input)
                if info is not None:
                    return await self._create(url, info, user_input)
                errors["base"] = error or "cannot_connect"
        schema = vol.Schema({vol.Required(CONF_URL): str}).extend(CREDENTIALS.schema)
        return self.async_show_form(step_id="user", data_schema=self.add_suggested_values_to_schema(
            schema, user_input or {}), errors=errors)

    async def async_step_mqtt(self, discovery_info: Any) -> Any:
        """A hub's retained ``<prefix>/hub/info`` (in a cluster each hub's ``<prefix>/hubs/<id>/ha_info``: an entry
        per hub; the manifest's MQTT topics): offer it, ask for credentials."""
        try:
            info = json.loads(discovery_info.payload)
            url = normalize_url(info["url"])
            identifier = hub_id({"home_assistant": info})
        except (ValueError, TypeError, KeyError, IndexError):
            return self.async_abort(reason="invalid_discovery_info")
        if not identifier:
            return self.async_abort(reason="invalid_discovery_info")
        await self.async_set_unique_id(identifier)
        self._abort_if_unique_id_configured(updates={CONF_URL: url})  # a hub that moved is followed
        self._url = url
        self.context["title_placeholders"] = {"name": str(info["device"].get("name") or "camhub")[:64]}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(self, user_input: dict[str, Any] | None = None) -> Any:
        assert self._url is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            info, error = await self._probe(self._url, user_input)
            if info is not None and hub_id(info) != self.unique_id:
                return self.async_abort(reason="wrong_hub")
            if info is not None:
                return await self._create(self._url, info, user_input)
            errors["base"] = error or "cannot_connect"
        return self.async_show_form(step_id="discovery_confirm", data_schema=CREDENTIALS, errors=errors,
                                    description_placeholders={"url": self._url})

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> Any:
        self._reauth_entry = self.hass.config_entries.async_get_entry(self.context["entry_id"])
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> Any:
        entry = self._reauth_entry
        assert entry is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            info, error = await self._probe(entry.data[CONF_URL], user_input)
            if info is not None and hub_id(info) != entry.unique_id:
                return self.async_abort(reason="wrong_hub")
            if info is not None:
                data = {CONF_URL: entry.data[CONF_URL], CONF_USERNAME: user_input.get(CONF_USERNAME, ""),
                        CONF_PASSWORD: user_input.get(CONF_PASSWORD, "")}
                return self.async_update_reload_and_abort(entry, data={**entry.data, **data})
            errors["base"] = error or "cannot_connect"
        schema = vol.Schema({vol.Required(CONF_USERNAME, default=entry.data.get(CONF_USERNAME, "admin")): str,
                             vol.Required(CONF_PASSWORD): str})
        return self.async_show_form(step_id="reauth_confirm", data_schema=schema, errors=errors,
                                    description_placeholders={"url": entry.data[CONF_URL]})
