"""``camhub hub``: run the hub until SIGINT/SIGTERM.

On the way out it closes every viewer (reason ``server_shutdown``), marks its cameras offline, says
``offline`` on MQTT and stops the embedded broker if it started one. Exit status 2 for settings
that cannot work (systemd does not restart the hub for those), 1 for a port already taken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
from collections.abc import Callable

from camhub.hub.app import Hub
from camhub.hub.config import HubConfig, add_arguments, config_from_args
from camhub.settings import SettingsError

log = logging.getLogger(__name__)

__all__ = ["Hub", "configure", "run", "serve"]


def _raise_fd_limit() -> None:
    """Each viewer costs two descriptors; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config: HubConfig, ready: Callable[[Hub], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run a hub until ``stop`` is set (by default: until SIGINT/SIGTERM); ``ready(hub)`` once it serves."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    hub = Hub(config)
    try:
        await hub.start()
    except BaseException:
        await hub.stop()
        raise
    if ready is not None:
        ready(hub)
    try:
        await stop.wait()
    finally:
        log.info("hub stopping")
        await hub.stop()


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except SettingsError as exc:
        print(f"camhub hub: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    try:
        asyncio.run(serve(config))
    except SettingsError as exc:  # found while building the hub, e.g. a bad CAMHUB_SOURCES entry
        print(f"camhub hub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"camhub hub: {exc}", file=sys.stderr)
        return 1
    return 0
