"""Camera pin maps of the ESP32-S3 camera boards camhub knows, keyed by ``board.board_id``.

A map gives, for each camera signal, a ``board`` attribute name (a string, as the board's
CircuitPython definition names it, ``ports/espressif/boards/<board_id>/pins.c``) or a GPIO number
(an int, ``microcontroller.pin.GPIO<n>``, for boards without a CircuitPython definition), or None
(not wired). ``data`` is one tuple attribute or eight pins D0..D7 (esp32-camera's Y2..Y9). The
sensor's SCCB bus is ``sda``/``scl``, or ``board.I2C()`` when both are absent. ``pwdn`` and
``reset`` go to ``espcamera.Camera``, whose driver pulses them before it probes the sensor
(esp32-camera ``driver/esp_camera.c``, ``camera_probe``). Any other board: ``CAMHUB_CAMERA_PINS``
(``config.parse_camera_pins``). Pure data, importable anywhere: ``camhub deploy`` reads which
boards have a map. Runs on CircuitPython and CPython alike.
"""

XCLK_HZ = 20000000  # espcamera's default, and what every board below is run at in its vendor's examples

PIN_MAPS = {
    # Adafruit MEMENTO (OV5640). CircuitPython ports/espressif/boards/adafruit_esp32s3_camera/pins.c:
    # CAMERA_DATA = GPIO13, 15, 16, 14, 12, 10, 9, 7; XCLK 8, PCLK 11, VSYNC 5, HREF 6, PWDN 21,
    # RESET 47; the sensor sits on the board's I2C (SDA 34, SCL 33), as adafruit_pycamera uses it.
    "adafruit_esp32s3_camera": {
        "name": "Adafruit MEMENTO", "sensor": "OV5640",
        "data": "CAMERA_DATA", "xclk": "CAMERA_XCLK", "pclk": "CAMERA_PCLK", "vsync": "CAMERA_VSYNC",
        "href": "CAMERA_HREF", "pwdn": "CAMERA_PWDN", "reset": "CAMERA_RESET",
    },
    # Espressif ESP32-S3-EYE (OV2640). CircuitPython ports/espressif/boards/espressif_esp32s3_eye/pins.c:
    # CAMERA_DATA = GPIO11, 9, 8, 10, 12, 18, 17, 16; XCLK 15, PCLK 13, VSYNC 6, HREF 7; SDA 4 / SCL 5
    # are the camera's SCCB (esp32-camera / arduino-esp32 camera_pins.h, CAMERA_MODEL_ESP32S3_EYE:
    # SIOD 4, SIOC 5, no PWDN or RESET line).
    "espressif_esp32s3_eye": {
        "name": "Espressif ESP32-S3-EYE", "sensor": "OV2640",
        "data": "CAMERA_DATA", "xclk": "CAMERA_XCLK", "pclk": "CAMERA_PCLK", "vsync": "CAMERA_VSYNC",
        "href": "CAMERA_HREF", "sda": "SDA", "scl": "SCL",
    },
    # Seeed Studio XIAO ESP32S3 Sense (OV2640; later units OV3660). CircuitPython
    # ports/espressif/boards/seeed_xiao_esp32_s3_sense/pins.c: CAM_DATA = GPIO15, 17, 18, 16, 14, 12,
    # 11, 48; CAM_XCLK 10, CAM_PCLK 13, CAM_VSYNC 38, CAM_HREF 47, and the camera's own I2C CAM_SCL 39 /
    # CAM_SDA 40 (Seeed's wiki and arduino-esp32 camera_pins.h CAMERA_MODEL_XIAO_ESP32S3 agree; no
    # PWDN or RESET line). Builds older than these names: CAMHUB_CAMERA_PINS with the GPIO numbers.
    "seeed_xiao_esp32_s3_sense": {
        "name": "Seeed XIAO ESP32S3 Sense", "sensor": "OV2640 / OV3660",
        "data": "CAM_DATA", "xclk": "CAM_XCLK", "pclk": "CAM_PCLK", "vsync": "CAM_VSYNC", "href": "CAM_HREF",
        "sda": "CAM_SDA", "scl": "CAM_SCL",
    },
    # Freenove ESP32-S3-WROOM CAM (OV2640 or OV3660): no CircuitPython board definition, so it runs
    # the generic ESP32-S3-DevKitC-1-N8R8 build (its module is an ESP32-S3-WROOM-1 N8R8) and the
    # pins are GPIO numbers from Freenove's schematic as its CameraWebServer sketch uses them
    # (Freenove_ESP32_S3_WROOM_Board, C/Sketches/Sketch_07.1_CameraWebServer: CAMERA_MODEL_ESP32S3_EYE
    # in camera_pins.h): Y2..Y9 = 11, 9, 8, 10, 12, 18, 17, 16; XCLK 15, PCLK 13, VSYNC 6, HREF 7,
    # SIOD 4, SIOC 5; no PWDN or RESET line.
    "freenove_esp32s3_wroom_cam": {
        "name": "Freenove ESP32-S3-WROOM CAM", "sensor": "OV2640 / OV3660",
        "data": (11, 9, 8, 10, 12, 18, 17, 16), "xclk": 15, "pclk": 13, "vsync": 6, "href": 7,
        "sda": 4, "scl": 5,
    },
}
# The generic build the Freenove board runs reports the DevKitC's board_id. (A bare DevKitC has no
# camera, so nothing else is assumed by this; a DevKitC wired differently sets CAMHUB_CAMERA_PINS.)
PIN_MAPS["espressif_esp32s3_devkitc_1_n8r8"] = PIN_MAPS["freenove_esp32s3_wroom_cam"]

SIGNALS = ("data", "xclk", "pclk", "vsync", "href", "sda", "scl", "pwdn", "reset")
REQUIRED = ("data", "pclk", "vsync", "href")
