"""The fleet file: which boards exist, where each one is reached and its own settings.

A TOML file with an optional ``[defaults]`` table (settings for every board) and one ``[[board]]``
table per board (``id``, ``target``, optional ``password`` and ``[board.settings]``). Every problem
in the file is reported at once, naming the board and the key, so a user fixes it in one pass.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from camhub_node.config import ID_RULE, is_valid_id

SettingValue = str | int

# CircuitPython's settings.toml parser reads bare keys only.
SETTING_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOP_KEYS = {"defaults", "board"}
BOARD_KEYS = {"id", "target", "password", "settings"}
# Set from the board's id; a second source of truth would only disagree with it.
RESERVED = {"CAMHUB_NODE_ID"}


class FleetError(ValueError):
    """A fleet file that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class Board:
    """One board of the fleet."""

    id: str
    target: str
    settings: dict[str, SettingValue]
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Fleet:
    """A parsed, validated fleet file."""

    path: Path
    defaults: dict[str, SettingValue]
    boards: tuple[Board, ...]

    def select(self, only: list[str] | None) -> tuple[Board, ...]:
        """The boards named in ``only`` (all when empty), in fleet-file order."""
        if not only:
            return self.boards
        known = {b.id for b in self.boards}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise FleetError(
                f"{self.path}: --only names no board {', '.join(map(repr, unknown))}; "
                f"the fleet has {', '.join(sorted(known))}"
            )
        return tuple(b for b in self.boards if b.id in only)


def read_text(path: Path, what: str, error: type[ValueError]) -> str:
    """The UTF-8 text of ``path``; ``error`` naming the file and ``what`` it is when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what}: {exc}") from None


def load_fleet(path: Path) -> Fleet:
    """Read and validate the fleet file at ``path``."""
    return parse_fleet(read_text(path, "fleet file", FleetError), path)


def parse_fleet(text: str, path: Path) -> Fleet:
    """Validate fleet-file ``text``; relative drive paths are relative to ``path``'s directory."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from None
    problems: list[str] = []
    for key in sorted(set(data) - TOP_KEYS):
        problems.append(f"unknown top-level key {key!r} (allowed: [defaults], [[board]])")

    defaults = _settings(data.get("defaults", {}), "[defaults]", problems)
    raw_boards = data.get("board", [])
    if not isinstance(raw_boards, list):
        problems.append("'board' must be an array of tables: write [[board]], not [board]")
        raw_boards = []
    if not raw_boards:
        problems.append("no boards: add at least one [[board]] table with an id and a target")

    boards: list[Board] = []
    seen_ids: dict[str, int] = {}
    seen_targets: dict[str, str] = {}
    for index, raw in enumerate(raw_boards, start=1):
        board = _board(raw, index, path.parent, problems)
        if board is None:
            continue
        if board.id in seen_ids:
            problems.append(f"duplicate board id {board.id!r} (boards #{seen_ids[board.id]} and #{index})")
            continue
        seen_ids[board.id] = index
        target_key = board.target.rstrip("/")
        if target_key in seen_targets:
            problems.append(
                f"board {board.id!r}: target {board.target!r} is already used by board {seen_targets[target_key]!r}"
            )
            continue
        seen_targets[target_key] = board.id
        boards.append(board)

    if problems:
        raise FleetError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    return Fleet(path=path, defaults=defaults, boards=tuple(boards))


def _board(raw: object, index: int, base: Path, problems: list[str]) -> Board | None:
    where = f"board #{index}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return None
    board_id = raw.get("id")
    if is_valid_id(board_id):
        where = f"board {board_id!r}"
    elif board_id is None:
        problems.append(f"{where}: missing id")
    else:
        problems.append(
            f"{where}: id {board_id!r} is not a slug ({ID_RULE}: the node and the hub refuse any other)"
        )
    for key in sorted(set(raw) - BOARD_KEYS):
        problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(BOARD_KEYS))})")

    target = raw.get("target")
    if not isinstance(target, str) or not target.strip():
        problems.append(f"{where}: missing target (a CIRCUITPY drive path or the board's http:// address)")
        target = None
    else:
        target = _target(target.strip(), base, where, problems)

    password = raw.get("password")
    if password is not None and not isinstance(password, str):
        problems.append(f"{where}: password must be a string")
        password = None
    if password is not None and target is not None and not target.startswith(("http://", "https://")):
        problems.append(f"{where}: password is only used with a web-workflow (http://) target")

    settings = _settings(raw.get("settings", {}), f"{where} settings", problems)
    if not isinstance(board_id, str) or not is_valid_id(board_id) or target is None:
        return None
    return Board(id=board_id, target=target, settings=settings, password=password)


def _target(target: str, base: Path, where: str, problems: list[str]) -> str | None:
    if "://" in target:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{where}: target {target!r} is neither a drive path nor an http:// address")
            return None
        if parts.username is not None or parts.password is not None:
            # Credentials in a URL end up in logs and tracebacks.
            problems.append(f"{where}: put the web-workflow password in password = \"...\", not in the target URL")
            return None
        return target
    path = Path(target).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _settings(raw: object, where: str, problems: list[str]) -> dict[str, SettingValue]:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table of KEY = value")
        return {}
    values: dict[str, SettingValue] = {}
    for key, value in raw.items():
        if not SETTING_KEY.fullmatch(key):
            problems.append(f"{where}: {key!r} is not a settings key CircuitPython can read (letters, digits, _)")
        elif key in RESERVED:
            problems.append(f"{where}: {key} comes from the board's id; remove it")
        elif isinstance(value, bool) or not isinstance(value, str | int):
            # CircuitPython's os.getenv reads strings and integers only.
            problems.append(
                f"{where}: {key} must be a string or an integer (CircuitPython reads no "
                f"{type(value).__name__} values from settings.toml)"
            )
        elif isinstance(value, str) and "\x00" in value:
            problems.append(f"{where}: {key} contains a NUL character")
        else:
            values[key] = value
    return values
