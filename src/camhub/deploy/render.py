"""Render one board's ``settings.toml``: the template, the fleet's defaults, the board's own settings.

CircuitPython reads ``settings.toml`` with its own small parser (``os.getenv``): flat ``KEY = value``
lines, base-10 integers and double-quoted strings with the escapes ``\\b \\t \\n \\f \\r \\" \\\\
\\uXXXX \\UXXXXXXXX`` (tested in CircuitPython's ``tests/circuitpython/getenv.py``); no tables, no
floats, no booleans. The template's comments and order are kept so the board's file still explains
itself; every value line is rewritten from the merged settings, and the result is parsed back and
compared before it is used.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from camhub.deploy.fleet import Board, SettingValue, read_text
from camhub.settings import SettingsError, parse_flat_toml
from camhub_node.keys import KNOWN, describe, unknown

KEY_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
NODE_ID_KEY = "CAMHUB_NODE_ID"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class RenderError(ValueError):
    """A template or setting that cannot become a settings.toml CircuitPython reads."""


@dataclass(frozen=True)
class Template:
    """A parsed settings template: its lines (for comments and order) and its typed values."""

    name: str
    lines: tuple[str, ...]
    values: dict[str, SettingValue]


def load_template(path: Path) -> Template:
    """Read a flat settings template (e.g. ``settings.toml.example``)."""
    text = read_text(path, "settings template", RenderError)
    try:
        data = parse_flat_toml(text, str(path))  # the same reader the hub and the sim node use
    except SettingsError as exc:
        raise RenderError(str(exc)) from None
    values: dict[str, SettingValue] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, str | int):  # a board's os.getenv: no floats
            raise RenderError(
                f"{path}: {key} must be a string or an integer: CircuitPython's settings.toml has "
                f"flat KEY = value lines only (no {type(value).__name__})"
            )
        values[key] = value
    return Template(name=path.name, lines=tuple(text.splitlines()), values=values)


def format_value(value: SettingValue) -> str:
    """One value as CircuitPython's parser reads it back unchanged."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RenderError(f"cannot write a {type(value).__name__} to settings.toml")
    if isinstance(value, int):
        return str(value)
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def merged_settings(
    template: Template | None,
    defaults: Mapping[str, SettingValue],
    board_settings: Mapping[str, SettingValue],
    node_id: str,
) -> dict[str, SettingValue]:
    """Template < fleet defaults < board settings; the node id always comes from the board."""
    values: dict[str, SettingValue] = dict(template.values) if template else {}
    values.update(defaults)
    values.update(board_settings)
    values[NODE_ID_KEY] = node_id
    return values


def render_settings(
    template: Template | None,
    defaults: Mapping[str, SettingValue],
    board_settings: Mapping[str, SettingValue],
    node_id: str,
    fleet_name: str = "the fleet file",
) -> bytes:
    """The board's settings.toml as bytes (UTF-8, LF line endings)."""
    values = merged_settings(template, defaults, board_settings, node_id)
    source = f"{template.name} and {fleet_name}" if template else fleet_name
    out = [
        f"# settings.toml for camhub node {node_id!r}, written by `camhub deploy` from {source}.",
        "# Edit those and deploy again: changes made here are overwritten.",
        "",
    ]
    written: set[str] = set()
    for line in template.lines if template else ():
        match = KEY_LINE.match(line)
        if match is None:
            out.append(line)
            continue
        key = match.group(1)
        out.append(f"{key} = {format_value(values[key])}")
        written.add(key)
    extra = [k for k in values if k not in written]
    if extra:
        if template:
            out += ["", f"# ---- From {fleet_name} " + "-" * max(3, 80 - len(fleet_name))]
        out += [f"{key} = {format_value(values[key])}" for key in extra]
    text = "\n".join(out).rstrip("\n") + "\n"
    _check(text, values, template)
    return text.encode("utf-8")


def _check(text: str, expected: Mapping[str, SettingValue], template: Template | None) -> None:
    """Parse the result back: a template line we could not rewrite shows up here, not on a board."""
    where = template.name if template else "settings"
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RenderError(
            f"{where}: only single-line KEY = value lines can be rendered for CircuitPython ({exc})"
        ) from None
    if parsed != dict(expected):
        differing = sorted(set(parsed.items()) ^ set(expected.items()), key=str)
        keys = sorted({k for k, _ in differing})
        raise RenderError(
            f"{where}: the rendered settings.toml does not read back as written (keys {', '.join(keys)}); "
            "use only single-line KEY = value lines"
        )


def known_keys(package: Path) -> tuple[str, ...]:
    """The settings keys camhub knows plus those of the firmware being deployed (its ``keys.py``
    ``KNOWN``, read with ``ast``, never run): a newer firmware's new keys are not unknown."""
    try:
        tree = ast.parse((package / "keys.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return KNOWN  # a firmware from before the list
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["KNOWN"]:
            try:
                theirs = ast.literal_eval(node.value)
            except ValueError:
                break
            if isinstance(theirs, tuple) and all(isinstance(k, str) for k in theirs):
                return KNOWN + tuple(k for k in theirs if k not in KNOWN)
    return KNOWN


def unknown_settings(
    template: Template | None,
    defaults: Mapping[str, SettingValue],
    boards: Iterable[Board],
    fleet_name: str,
    known: tuple[str, ...] = KNOWN,
) -> list[str]:
    """Each unknown ``CAMHUB_*`` key of the boards' settings.toml, where it is written (the template,
    ``[defaults]`` or a board's settings: every rendered key comes from one of them) and the key it
    probably meant."""
    places: list[tuple[str, Mapping[str, SettingValue]]] = [(f"{fleet_name} [defaults]", defaults)]
    if template is not None:
        places.insert(0, (template.name, template.values))
    places += [(f"{fleet_name}, board {board.id!r} settings", board.settings) for board in boards]
    return [describe(name, near, where) for where, values in places for name, near in unknown(values, known)]
