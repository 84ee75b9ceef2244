"""The hub -> MQTT: its status topics and Home Assistant discovery."""
