"""Test code that runs inside the Unix-port VMs as well as on CPython (plain MicroPython code)."""
