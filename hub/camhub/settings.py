"""The one settings loader on the PC side: a flat settings.toml, overridden by the environment.

The board reads the same file through CircuitPython's ``os.getenv``; here the file is parsed with
``tomllib`` and every key may be overridden by an environment variable of the same name.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

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


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings from ``path`` (if given) with ``CAMHUB_*``/``CIRCUITPY_*`` environment overrides."""
    environ = os.environ if environ is None else environ
    values = read_settings_file(path) if path is not None else {}
    values.update({k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)})
    return values
