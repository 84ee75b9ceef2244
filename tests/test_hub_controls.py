"""A node's settings as the hub offers and checks them (``core.controls``): what it announces it accepts,
and which changes the hub forwards. The dashboard and Home Assistant both show these ranges, so a change
the node would refuse is never offered nor sent. (Over HTTP: test_hub_http.py; on a real node:
test_hub_settings.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from camhub.hub.core.controls import (
    FIRMWARE_DEFAULT,
    ChangeRefused,
    ControlError,
    Controls,
    check_change,
    controls_of,
    current_settings,
    parse_controls,
    summary,
)
from camhub_node.config import CONTROLS, FPS_MAX, QUALITY_MAX, QUALITY_MIN

NODE = Controls(fps=(1, 25), jpeg_quality=(5, 60), frame_sizes=("QVGA", "VGA", "XGA"))


@pytest.mark.parametrize(("request_", "sent"), [
    ({"fps": 1}, {"fps": 1}),
    ({"fps": 25}, {"fps": 25}),
    ({"fps": 12.0}, {"fps": 12}),  # a whole number written as a float (JavaScript sends those)
    ({"jpeg_quality": 5}, {"jpeg_quality": 5}),
    ({"jpeg_quality": 60}, {"jpeg_quality": 60}),
    ({"frame_size": "xga"}, {"frame_size": "XGA"}),
    ({"frame_size": "Vga", "fps": 3, "jpeg_quality": 30}, {"fps": 3, "jpeg_quality": 30, "frame_size": "VGA"}),
])
def test_a_change_within_the_nodes_ranges_is_sent_as_checked(request_: dict[str, Any], sent: dict[str, Any]) -> None:
    checked = NODE.check(request_)
    assert checked == sent and [type(v) for v in checked.values()] == [type(v) for v in sent.values()]


@pytest.mark.parametrize(("request_", "key", "message"), [
    (None, "body", "expected a JSON object with fps, jpeg_quality and/or frame_size"),
    ([("fps", 5)], "body", "expected a JSON object"),
    ({}, "body", "expected a JSON object"),
    ({"colour": "red"}, "colour", "unknown setting (fps, jpeg_quality, frame_size)"),
    ({"fps": 5, "x" * 100: 1}, "x" * 32, "unknown setting"),
    ({"fps": 0}, "fps", "must be a whole number from 1 to 25"),
    ({"fps": 26}, "fps", "must be a whole number from 1 to 25"),
    ({"fps": 12.5}, "fps", "must be a whole number from 1 to 25"),
    ({"fps": "12"}, "fps", "must be a whole number"),
    ({"fps": True}, "fps", "must be a whole number"),  # JSON true is not 1
    ({"fps": None}, "fps", "must be a whole number"),
    ({"jpeg_quality": 4}, "jpeg_quality", "must be a whole number from 5 to 60"),
    ({"jpeg_quality": 61}, "jpeg_quality", "must be a whole number from 5 to 60"),
    ({"jpeg_quality": False}, "jpeg_quality", "must be a whole number from 5 to 60"),
    ({"frame_size": "UXGA"}, "frame_size", "must be one of QVGA, VGA, XGA"),
    ({"frame_size": 640}, "frame_size", "must be one of QVGA, VGA, XGA"),
    ({"fps": 5, "frame_size": "HD"}, "frame_size", "must be one of"),  # one bad value: nothing is sent
])
def test_a_change_outside_them_is_refused_naming_the_field(request_: Any, key: str, message: str) -> None:
    with pytest.raises(ControlError) as refused:
        NODE.check(request_)
    assert refused.value.key == key and str(refused.value).startswith(f"{key}: {message}")


def test_what_a_node_announces_is_read_and_sizes_listed_smallest_first() -> None:
    controls = parse_controls({"fps": [2, 20], "jpeg_quality": [0, 100],
                               "frame_size": ["VGA", "QQVGA", "ZZ_CUSTOM", "VGA", "HD", "AA_CUSTOM", "P_HD", "XGA"]})
    assert controls.fps == (2, 20) and controls.jpeg_quality == (0, 100)
    # by picture area (XGA 1024x768 is smaller than HD 1280x720, though taller; HD and P_HD 720x1280 are as
    # large: by name), names the hub does not know last
    assert controls.frame_sizes == ("QQVGA", "VGA", "XGA", "HD", "P_HD", "AA_CUSTOM", "ZZ_CUSTOM")
    assert controls.to_dict() == {"fps": [2, 20], "jpeg_quality": [0, 100], "frame_size": list(controls.frame_sizes)}
    assert parse_controls({"fps": [1, 1000], "jpeg_quality": [7, 7], "frame_size": ["X" * 16] * 64}).fps == (1, 1000)


# what a refusal of an announce's controls says the field should have been (the hub logs it)
EXPECTED = {"controls": "not an object", "controls.frame_size": "expected 1-64 frame size names",
            "controls.fps": "expected [low, high], whole numbers within 1..1000",
            "controls.jpeg_quality": "expected [low, high], whole numbers within 0..100"}


@pytest.mark.parametrize(("controls", "field"), [
    ([1, 30], "controls"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55]}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": "VGA"}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": []}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": ["VGA"] * 65}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": ["vga"]}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": ["X" * 17]}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": [""]}, "controls.frame_size"),
    ({"fps": [1, 30], "jpeg_quality": [2, 55], "frame_size": [7]}, "controls.frame_size"),
    ({"fps": [0, 30], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [1, 1001], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [30, 1], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [1, 30, 60], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [1], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": (1, 30), "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [True, 30], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [1, 30.0], "jpeg_quality": [2, 55], "frame_size": ["VGA"]}, "controls.fps"),
    ({"fps": [1, 30], "jpeg_quality": [-1, 55], "frame_size": ["VGA"]}, "controls.jpeg_quality"),
    ({"fps": [1, 30], "jpeg_quality": [2, 101], "frame_size": ["VGA"]}, "controls.jpeg_quality"),
    ({"fps": [1, 30], "frame_size": ["VGA"]}, "controls.jpeg_quality"),
])
def test_an_announce_whose_controls_cannot_be_used_is_refused_naming_the_field(controls: Any, field: str) -> None:
    with pytest.raises(ControlError) as refused:
        parse_controls(controls)
    assert refused.value.key == field
    # the hub logs this refusal: it says what the field should have been
    assert str(refused.value).startswith(f"{field}: {EXPECTED[field]}"), str(refused.value)



def test_a_node_that_announces_no_controls_accepts_what_this_firmware_accepts() -> None:
    assert FIRMWARE_DEFAULT.fps == (1, FPS_MAX) and FIRMWARE_DEFAULT.jpeg_quality == (QUALITY_MIN, QUALITY_MAX)
    assert list(FIRMWARE_DEFAULT.frame_sizes) == CONTROLS["frame_size"]
    assert controls_of({"id": "old"}) is FIRMWARE_DEFAULT
    assert controls_of({"controls": {"fps": [1, 5], "jpeg_quality": [2, 9], "frame_size": ["VGA"]}}).fps == (1, 5)
    assert controls_of(None) is None  # known from an earlier run, not announced yet
    assert controls_of({"id": "door"}, "static") is None  # a plain MJPEG source


def test_only_an_online_node_gets_a_change() -> None:
    announce = {"fps": 10, "jpeg_quality": 12, "frame_size": "VGA",
                "controls": {"fps": [1, 25], "jpeg_quality": [5, 60], "frame_size": ["VGA"]}}
    assert check_change(announce, "mqtt", True, {"fps": 25}) == {"fps": 25}
    cases = [((announce, "static", True, {"fps": 5}), 409, "no_node", "plain MJPEG source"),
             ((None, "mqtt", True, {"fps": 5}), 409, "no_node", "no settings to change"),
             ((announce, "mqtt", False, {"fps": 5}), 409, "node_offline", "offline"),
             ((announce, "mqtt", True, {"fps": 26}), 400, "bad_value", "fps: must be a whole number from 1 to 25")]
    for args, status, reason, message in cases:
        with pytest.raises(ChangeRefused) as refused:
            check_change(*args)
        assert (refused.value.status, refused.value.reason) == (status, reason) and message in str(refused.value)


def test_what_the_api_shows_of_a_nodes_settings() -> None:
    announce = {"fps": 10, "jpeg_quality": 12, "frame_size": "VGA", "board": "x"}
    assert current_settings(announce) == {"fps": 10, "jpeg_quality": 12, "frame_size": "VGA"}
    assert current_settings(None) == {"fps": None, "jpeg_quality": None, "frame_size": None}
    assert summary(announce, "mqtt") == {"controls": FIRMWARE_DEFAULT.to_dict()}
    assert summary(announce, "static") == {"controls": None}
