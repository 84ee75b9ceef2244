"""The one settings loader on the PC side: a flat settings.toml, overridden by the environment.

The board reads the same file through CircuitPython's ``os.getenv``; here the file is parsed with
``tomllib`` and every key may be overridden by an environment variable of the same name. A
``CAMHUB_*`` key camhub does not know (``camhub_node.keys``, the one list) is an error in the file
and a warning in the environment, which other programs share; both name the key it probably meant.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from camhub_node import keys

log = logging.getLogger(__name__)

ENV_PREFIXES = ("CAMHUB_", "CIRCUITPY_")


class SettingsError(ValueError):
    """A settings file that cannot be used, with a message naming the file and the key."""


def parse_flat_toml(text: str, where: str) -> dict[str, str | int | float | bool]:
    """The values of a flat ``KEY = value`` file, as typed by TOML; nested tables are refused."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}") from None
    for key, value in data.items():
        if not isinstance(value, str | int | float):
            raise SettingsError(
                f"{where}: {key} must be a string or a number (CircuitPython reads only flat "
                f"KEY = value lines), not {type(value).__name__}"
            )
    return data


def read_settings_file(path: Path) -> dict[str, str]:
    """Parse a flat ``KEY = value`` TOML file into strings, as ``os.getenv`` would return them."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such settings file") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text: {exc}") from None
    values: dict[str, str] = {}
    for key, value in parse_flat_toml(text, str(path)).items():
        values[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return values


def check_file_keys(values: Mapping[str, object], where: str) -> None:
    """SettingsError naming every unknown ``CAMHUB_*`` key of a settings file, and the key each probably meant."""
    lines = [keys.describe(name, near) for name, near in keys.unknown(values)]
    if len(lines) == 1:
        raise SettingsError(f"{where}: {lines[0]}")
    if lines:
        raise SettingsError(f"{where}: {len(lines)} unknown settings (a misspelt key is never read):\n  "
                            + "\n  ".join(lines))


def warn_unknown_environment(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Log a warning for each unknown ``CAMHUB_*`` environment variable (and once why it is only a warning)."""
    unknown: list[tuple[str, str | None]] = keys.report(environ, "the environment", log.warning,
                                                        keys.ENVIRONMENT_NOTE)  # the firmware's list: untyped
    return unknown


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None,
                  warn_environment: bool = True) -> dict[str, str]:
    """Settings from ``path`` (if given) with ``CAMHUB_*``/``CIRCUITPY_*`` environment overrides.

    An unknown ``CAMHUB_*`` key in the file is a SettingsError; in the environment a warning, unless
    ``warn_environment`` is False (the simulated node's firmware warns about its environment itself).
    """
    environ = os.environ if environ is None else environ
    values = read_settings_file(path) if path is not None else {}
    check_file_keys(values, str(path))
    if warn_environment:
        warn_unknown_environment(environ)
    values.update({k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)})
    return values
