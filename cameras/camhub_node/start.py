"""The node's start: the platform, the settings, then a stream (``node.Node``) or one wake (``snapshot``).

Light on purpose: a battery camera runs this on every wake, and every module it imports costs awake
time (on a board, the libraries' ``.mpy``; on the MicroPython VM, compiling their ``.py``). So the
stream's machinery -- asyncio, the fan-out, the HTTP server -- is imported only in stream mode.
Runs on CircuitPython and CPython alike.
"""

import sys

from camhub_node.config import Config, ConfigError

# sys.platform of MicroPython's and CircuitPython's Unix ports; a board says its port ("Espressif":
# CircuitPython's ports/espressif/mpconfigport.h).
UNIX_PORTS = ("linux", "darwin")


def _platform():
    """The board's platform, or a PC's: CPython's, or a MicroPython-family Unix port's."""
    if sys.implementation.name == "cpython":
        from camhub_node.host import HostPlatform
        return HostPlatform()
    if sys.platform in UNIX_PORTS:
        from camhub_node.unixport import UnixPortPlatform
        return UnixPortPlatform()
    from camhub_node.board import BoardPlatform
    return BoardPlatform()


def warn_unknown_settings(platform):
    """A warning for each ``CAMHUB_*`` setting the node does not know, with the key it probably
    meant: a misspelt key is never read, so its default is used silently otherwise. The node still starts."""
    from camhub_node import keys

    return keys.report(platform.setting_names(), platform.settings_where, platform.warn, platform.settings_note)


def main():
    """Run the node on this platform (the board's code.py and ``camhub node --sim`` call this)."""
    platform = _platform()
    warn_unknown_settings(platform)
    try:
        cfg = Config(defaults=platform.defaults())
        check = getattr(platform, "check_settings", None)  # a board's limits: camera pins, sockets
        if check is not None:
            check(cfg)
    except ConfigError as error:
        return platform.bad_settings(error)
    if cfg.mode == "snapshot":  # a battery camera: one picture, then deep sleep (this call does not return)
        from camhub_node.snapshot import wake

        return wake(platform, cfg)
    import asyncio

    from camhub_node.node import Node

    platform.start(cfg)
    node = Node(platform, cfg)
    try:
        asyncio.run(node.run())
    except KeyboardInterrupt:
        node.stopping = True
        node.shutdown()
    except Exception as error:
        return platform.fatal(error)
    return platform.finished()
