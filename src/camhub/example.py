"""``camhub example settings|fleet``: print a commented template to start your own file from.

``camhub example settings > settings.toml`` works where camhub was installed from a wheel, with no
source tree around; the text is the tree's ``settings.toml.example`` / ``fleet.toml.example``.
"""

from __future__ import annotations

import argparse
import sys

from camhub.resources import shipped

TEMPLATES = {"settings": "settings.toml.example", "fleet": "fleet.toml.example"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("which", choices=sorted(TEMPLATES),
                        help="settings: the flat settings file (hub and boards); fleet: the boards for deploy")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(shipped(TEMPLATES[args.which]).read_text())
    return 0
