"""Battery cameras: nodes in snapshot mode that wake, push one picture over MQTT and deep-sleep.

``pictures`` takes their pushed pictures into the camera's feed (a second kind of source beside the
HTTP pull); ``wakes`` follows each one's wakes (sleeping, or missing after missed wakes) and queues
settings for the next wake. Wired in one block of ``app.py``: what ``ingest`` hears of a node comes
in through its signals, and the settings API queues through ``ingest.control.SettingsQueue``.
"""
