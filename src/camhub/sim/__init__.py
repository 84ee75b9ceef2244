"""The node firmware's PC runners: ``camhub node --sim`` (CPython, or the MicroPython VM) and ``camhub demo``."""
