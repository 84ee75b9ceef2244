"""camhub camera node: the firmware that runs on an ESP32-S3 board and, unchanged, on a PC."""

__version__ = "0.1.0"
