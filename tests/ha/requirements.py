"""Print the pip requirements of the integrations the `ha` tests load, and of what they depend on.

Run with Home Assistant's own interpreter (tests/ha/install.sh does): it reads each integration's
manifest.json, so the list follows the installed release instead of being copied by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import homeassistant.components
from homeassistant import bootstrap

# What tests/support/homeassistant.py puts in configuration.yaml (plus the MQTT config entry), and what
# HA always loads (bootstrap's sets; frontend failing to load would put HA into recovery mode).
CONFIGURED = ("http", "api", "websocket_api", "config", "camera", "image", "sensor", "binary_sensor", "select",
              "number", "logger", "mqtt", "mjpeg")  # mjpeg: benchmarks/ha_lag.py compares it
# (2025.x renamed LOGGING_INTEGRATIONS to LOGGING_AND_HTTP_DEPS_INTEGRATIONS.)
_LOGGING = getattr(bootstrap, "LOGGING_INTEGRATIONS", None) or bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS
ALWAYS = (bootstrap.CORE_INTEGRATIONS | _LOGGING | bootstrap.FRONTEND_INTEGRATIONS
          | bootstrap.DEFAULT_INTEGRATIONS) - {"sentry"}


def main() -> int:
    root = Path(homeassistant.components.__file__).parent
    seen: set[str] = set()
    todo = [*CONFIGURED, *sorted(ALWAYS)]
    requirements: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        manifest = root / name / "manifest.json"
        if not manifest.is_file():
            continue
        data = json.loads(manifest.read_text())
        requirements.update(data.get("requirements", []))
        todo.extend(data.get("dependencies", []))
        todo.extend(data.get("after_dependencies", []))
    print("\n".join(sorted(requirements)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
