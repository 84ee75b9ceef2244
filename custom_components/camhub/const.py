"""Constants of the camhub integration."""

from __future__ import annotations

from datetime import timedelta

DOMAIN = "camhub"
MQTT_DOMAIN = "mqtt"  # the hub's MQTT discovery names devices as ("mqtt", identifier)
SCAN_INTERVAL = timedelta(seconds=10)  # how often the hub's camera list is read
MQTT_STILL_WAIT_S = 15.0  # how long a new camera waits for the hub to take its MQTT still camera away
