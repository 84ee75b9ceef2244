"""Real boards: each board's camera pins, CAMHUB_CAMERA_PINS, the socket budget, Wi-Fi before the camera.

The node's own board code (``boardcam.py``, ``board.py``) runs against stand-ins for the modules
only a board has (``tests/support/circuitpython.py``: ``board`` per CircuitPython's pins.c,
``espcamera.Camera`` with its documented signature, ``wifi``), which record what the node asked for.
The expected GPIOs come from each vendor's own table, independently of the board definitions.
"""

from __future__ import annotations

import importlib

import pytest

from camhub_node.config import Config, ConfigError, parse_camera_pins
from tests.support import circuitpython

# GPIOs as each vendor publishes them: data D0..D7 (Y2..Y9), xclk, pclk, vsync, href, SCCB scl/sda, pwdn, reset.
PUBLISHED = {
    # Adafruit MEMENTO: adafruit_pycamera / the board's pins.c (its sensor is on the STEMMA I2C bus)
    "adafruit_esp32s3_camera": ((13, 15, 16, 14, 12, 10, 9, 7), 8, 11, 5, 6, 33, 34, 21, 47),
    # arduino-esp32 CameraWebServer camera_pins.h, CAMERA_MODEL_ESP32S3_EYE
    "espressif_esp32s3_eye": ((11, 9, 8, 10, 12, 18, 17, 16), 15, 13, 6, 7, 5, 4, None, None),
    # Seeed wiki / camera_pins.h CAMERA_MODEL_XIAO_ESP32S3
    "seeed_xiao_esp32_s3_sense": ((15, 17, 18, 16, 14, 12, 11, 48), 10, 13, 38, 47, 39, 40, None, None),
    # Freenove ESP32-S3-WROOM CAM on the generic DevKitC-1-N8R8 build: Freenove's camera_pins.h
    "espressif_esp32s3_devkitc_1_n8r8": ((11, 9, 8, 10, 12, 18, 17, 16), 15, 13, 6, 7, 5, 4, None, None),
}


def _config(**settings: str) -> Config:
    env = {"CAMHUB_NODE_ID": "board", "CAMHUB_WATCHDOG_S": "0", **settings}
    return Config(getenv=env.get)


def _gpio(pin: object) -> int | None:
    return None if pin is None else pin.number  # type: ignore[attr-defined]


def _wiring(args: dict[str, object]) -> tuple:
    i2c = args["i2c"]
    return (tuple(_gpio(p) for p in args["data_pins"]), _gpio(args["external_clock_pin"]),  # type: ignore[attr-defined]
            _gpio(args["pixel_clock_pin"]), _gpio(args["vsync_pin"]), _gpio(args["href_pin"]),
            _gpio(i2c.scl), _gpio(i2c.sda), _gpio(args["powerdown_pin"]), _gpio(args["reset_pin"]))  # type: ignore


@pytest.mark.parametrize("board_id", sorted(PUBLISHED))
def test_each_known_board_gets_its_published_camera_wiring(monkeypatch: pytest.MonkeyPatch, board_id: str) -> None:
    circuitpython.install(monkeypatch, board_id)
    boardcam = importlib.import_module("camhub_node.boardcam")
    camera = boardcam.BoardCamera(_config(CAMHUB_FRAME_SIZE="SVGA", CAMHUB_JPEG_QUALITY="20"))
    (made,) = circuitpython.Camera.made
    assert camera.cam is made
    assert _wiring(made.args) == PUBLISHED[board_id]
    assert made.args["pixel_format"] == "PixelFormat.JPEG"
    assert made.args["frame_size"] == "FrameSize.SVGA" and made.args["jpeg_quality"] == 20
    assert made.args["framebuffer_count"] == 2 and made.args["grab_mode"] == "GrabMode.LATEST"
    assert made.args["external_clock_frequency"] == 20_000_000


def test_any_other_board_is_described_with_camhub_camera_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    circuitpython.install(monkeypatch, "espressif_esp32s3_devkitc_1_n16r8")
    boardcam = importlib.import_module("camhub_node.boardcam")
    pins = "data=39,40,41,42,12,10,8,4 xclk=45 pclk=5 vsync=6 href=7 sda=1 scl=2 pwdn=-1 reset=3 xclk_hz=10000000"
    boardcam.BoardCamera(_config(CAMHUB_CAMERA_PINS=pins))
    (made,) = circuitpython.Camera.made
    assert _wiring(made.args) == ((39, 40, 41, 42, 12, 10, 8, 4), 45, 5, 6, 7, 2, 1, None, 3)
    assert made.args["external_clock_frequency"] == 10_000_000


def test_camhub_camera_pins_may_name_a_known_board_or_board_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    circuitpython.install(monkeypatch, "espressif_esp32s3_devkitc_1_n16r8")
    boardcam = importlib.import_module("camhub_node.boardcam")
    boardcam.BoardCamera(_config(CAMHUB_CAMERA_PINS="freenove_esp32s3_wroom_cam"))
    assert _wiring(circuitpython.Camera.made[0].args) == PUBLISHED["espressif_esp32s3_devkitc_1_n8r8"]

    circuitpython.install(monkeypatch, "adafruit_esp32s3_camera")
    boardcam = importlib.import_module("camhub_node.boardcam")
    boardcam.BoardCamera(_config(CAMHUB_CAMERA_PINS=(
        "data=CAMERA_DATA xclk=CAMERA_XCLK pclk=CAMERA_PCLK vsync=CAMERA_VSYNC href=CAMERA_HREF")))
    # no sda/scl: board.I2C(); no pwdn/reset given: not driven
    assert _wiring(circuitpython.Camera.made[0].args) == (*PUBLISHED["adafruit_esp32s3_camera"][:7], None, None)


def test_a_board_without_a_pin_map_is_refused_at_start_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    circuitpython.install(monkeypatch, "espressif_esp32s3_devkitc_1_n16r8")
    board = importlib.import_module("camhub_node.board")
    with pytest.raises(ConfigError, match=r"'espressif_esp32s3_devkitc_1_n16r8'.*CAMHUB_CAMERA_PINS"):
        board.BoardPlatform().check_settings(_config())


def test_a_pin_the_build_lacks_is_named_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    circuitpython.install(monkeypatch, "espressif_esp32s3_devkitc_1_n16r8")
    board = importlib.import_module("camhub_node.board")
    with pytest.raises(ConfigError, match=r"board\.CAM_DATA.*GPIO numbers"):
        board.BoardPlatform().check_settings(_config(CAMHUB_CAMERA_PINS="data=CAM_DATA pclk=1 vsync=2 href=3"))
    assert circuitpython.Camera.made == []


@pytest.mark.parametrize("text, error", [
    ("data=1,2,3,4,5,6,7 pclk=8 vsync=9 href=10", "exactly 8 pins"),
    ("data=1,2,3,4,5,6,7,8 pclk=9 vsync=10", "needs href="),
    ("data=1,2,3,4,5,6,7,8 pclk=9 vsync=10 href=11 led=12", "unknown pin 'led'"),
    ("data=1,2,3,4,5,6,7,8 pclk=8 vsync=10 href=11", "GPIO8 for two signals"),
    ("data=1,2,3,4,5,6,7,8 pclk=49 vsync=10 href=11", "not an ESP32-S3 GPIO"),
    ("data=1,2,3,4,5,6,7,8 pclk=9 vsync=10 href=11 sda=12", "both sda= and scl="),
    ("data=1,2,3,4,5,6,7,8 pclk=9 vsync=10 href=11 href=12", "href twice"),
    ("m5stack_cams3", "must name a known board"),
])
def test_bad_camhub_camera_pins_are_refused_clearly(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_camera_pins(text)
    with pytest.raises(ConfigError, match="CAMHUB_CAMERA_PINS"):
        _config(CAMHUB_CAMERA_PINS=text)


@pytest.mark.parametrize("quality, ok", [(2, True), (55, True), (56, False), (63, False), (1, False)])
def test_jpeg_quality_is_bounded_to_what_espcamera_accepts(quality: int, ok: bool) -> None:
    if ok:
        assert _config(CAMHUB_JPEG_QUALITY=str(quality)).jpeg_quality == quality
    else:
        with pytest.raises(ConfigError, match="CAMHUB_JPEG_QUALITY must be from 2 to 55"):
            _config(CAMHUB_JPEG_QUALITY=str(quality))


@pytest.mark.parametrize("web_workflow, mqtt, viewers, fits", [
    (True, True, 3, True),  # 1 listener + 1 MQTT + 3 viewers + 3 web workflow = 8
    (True, True, 4, False),
    (True, False, 4, True),
    (False, True, 6, True),
    (False, True, 7, False),
])
def test_settings_whose_sockets_do_not_fit_the_board_are_refused_at_start(
        monkeypatch: pytest.MonkeyPatch, web_workflow: bool, mqtt: bool, viewers: int, fits: bool) -> None:
    circuitpython.install(monkeypatch, "adafruit_esp32s3_camera")
    board = importlib.import_module("camhub_node.board")
    if web_workflow:
        monkeypatch.setenv("CIRCUITPY_WEB_API_PASSWORD", "secret")
    else:
        monkeypatch.delenv("CIRCUITPY_WEB_API_PASSWORD", raising=False)
    cfg = _config(CAMHUB_MAX_CLIENTS=str(viewers), **({"CAMHUB_MQTT_HOST": "hub.local"} if mqtt else {}))
    if fits:
        board.BoardPlatform().check_settings(cfg)
        return
    with pytest.raises(ConfigError) as refused:
        board.BoardPlatform().check_settings(cfg)
    message = str(refused.value)
    assert f"CAMHUB_MAX_CLIENTS = {viewers} does not fit this board's 8 sockets" in message
    assert ("web workflow up to 3" in message) == web_workflow and "secret" not in message
    assert f"at most {8 - 1 - int(mqtt) - 3 * int(web_workflow)} viewers" in message


def test_wifi_comes_up_without_power_saving_before_the_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    wifi = circuitpython.install(monkeypatch, "adafruit_esp32s3_camera")
    monkeypatch.setenv("CIRCUITPY_WIFI_SSID", "home")
    board = importlib.import_module("camhub_node.board")
    platform = board.BoardPlatform()
    cfg = _config()
    with pytest.raises(RuntimeError, match="after Wi-Fi"):
        platform.camera(cfg)  # circuitpython#9241: never before Wi-Fi
    assert circuitpython.Camera.made == []
    platform.start(cfg)
    assert wifi.radio.connects == ["home"]
    assert wifi.radio.power_management == circuitpython.PowerManagement.NONE
    platform.camera(cfg)
    assert [cam.wifi_was_up for cam in circuitpython.Camera.made] == [True]
