"""The ``camhub`` command line: ``demo``, ``hub``, ``node``, ``deploy`` and ``example``.

Each command lives in its own module exposing ``configure(parser)`` and ``run(args) -> int``; only
the module of the command being run is imported, so one command's dependencies never slow or break
another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from camhub import __version__

COMMANDS = {
    "demo": ("camhub.sim.demo", "embedded MQTT broker + simulated nodes + the hub, in one command"),
    "hub": ("camhub.hub.command", "run the hub: discovery, one pull per camera, fan-out, dashboard"),
    "node": ("camhub.sim.node", "run the real node firmware on this PC (--sim)"),
    "deploy": ("camhub.deploy.command", "put the firmware, libraries and settings on a fleet of boards"),
    "example": ("camhub.example", "print a commented settings.toml or fleet.toml to start from"),
}


def build_parser(command_name: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command_name``'s options are loaded (none for top-level help)."""
    parser = argparse.ArgumentParser(prog="camhub", description="camhub: many ESP32-S3 cameras, one hub.")
    parser.add_argument("--version", action="version", version=f"camhub {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module_name)
        if name == command_name:
            importlib.import_module(module_name).configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command_name = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command_name).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return importlib.import_module(args.module).run(args)
    except KeyboardInterrupt:
        return 130
