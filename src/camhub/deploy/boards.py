"""Whether the firmware can drive a board's camera: a pin map for its board id, or CAMHUB_CAMERA_PINS.

The same facts the node checks at start (``camhub_node.pins``, ``camhub_node.config``), asked before
deploying, so a board that would refuse to start is flagged on the PC -- in a dry run too.
"""

from __future__ import annotations

from camhub.deploy.targets import BoardInfo
from camhub_node.config import ConfigError, parse_camera_pins
from camhub_node.pins import PIN_MAPS

PINS_KEY = "CAMHUB_CAMERA_PINS"


def camera_warning(info: BoardInfo, settings: dict[str, object]) -> str | None:
    """Why the node would refuse this board's camera at start, or None when it has pins."""
    pins = settings.get(PINS_KEY)
    if pins not in (None, ""):
        try:
            parse_camera_pins(str(pins))
        except ConfigError as exc:
            return f"the node will refuse to start: {exc}"
        return None
    if info.board_id in PIN_MAPS:
        return None
    which = f"{info.board_name} ({info.board_id})" if info.board_id else f"{info.board_name} (no board id reported)"
    return (f"camhub has no camera pin map for {which} and its settings give no {PINS_KEY}: the node will "
            f"refuse to start; set {PINS_KEY} for this board (README: Adding a board)")
