"""The manifest kept on each board: what camhub deployed there, by content hash.

``/camhub-manifest.json`` lists every file camhub put on the board with its SHA-256 and size. A file
is rewritten only when the wanted content's hash differs from the manifest's, or when the file on
the board is missing or has another size (someone edited the drive). The manifest never claims a
file that was not verified: before anything is written its entries for the files about to change
are dropped, and the full manifest is written only after every file has been verified.

``/camhub-deploying`` marks a deploy under way: written before anything else, removed after
``code.py`` and the manifest. While it exists the node's ``code.py`` waits instead of importing a
``lib/`` that may be half new; a deploy that stops part-way leaves it until the next one finishes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from camhub.deploy.bundle import BoardFile
from camhub.deploy.targets import TargetError, safe_path

MANIFEST_PATH = "camhub-manifest.json"
MARKER_PATH = "camhub-deploying"  # the name cameras/code.py checks for
FORMAT = 1
MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


@dataclass
class Manifest:
    """What camhub deployed on one board."""

    files: dict[str, Entry] = field(default_factory=dict)
    board: str | None = None
    libraries: str = ""

    @classmethod
    def parse(cls, data: bytes | None) -> tuple[Manifest, str | None]:
        """The manifest in ``data`` (None: no manifest yet) and a warning if it could not be used."""
        if data is None:
            return cls(), None
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                return cls(), f"manifest format {raw.get('format')!r} is not {FORMAT}: every file is rewritten"
            files: dict[str, Entry] = {}
            dropped = 0
            for path, e in raw["files"].items():
                try:
                    # The manifest comes from the board: never let it name a path outside the drive.
                    files[safe_path(str(path))] = Entry(str(e["sha256"]), int(e["size"]))
                except TargetError:
                    dropped += 1
            warning = f"manifest names {dropped} unsafe path(s); ignored" if dropped else None
            return cls(files, raw.get("board"), str(raw.get("libraries", ""))), warning
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return cls(), f"manifest unreadable ({exc.__class__.__name__}): every file is rewritten"

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "about": "Files put on this board by `camhub deploy`, by SHA-256. Deleting this file makes "
            "the next deploy rewrite everything.",
            "board": self.board,
            "libraries": self.libraries,
            "files": {p: {"sha256": e.sha256, "size": e.size} for p, e in sorted(self.files.items())},
        }
        return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")

    def without(self, paths: Iterable[str]) -> Manifest:
        drop = set(paths)
        return Manifest({p: e for p, e in self.files.items() if p not in drop}, self.board, self.libraries)

    def with_files(self, files: Iterable[BoardFile]) -> Manifest:
        updated = dict(self.files)
        updated.update({f.path: Entry(f.sha256, f.size) for f in files})
        return Manifest(updated, self.board, self.libraries)


@dataclass(frozen=True)
class Plan:
    """What a deploy does on one board: files to write (in order), files left alone, files to remove;
    ``marker_left``: an earlier deploy stopped part-way and its marker is still there."""

    write: list[BoardFile]
    unchanged: list[BoardFile]
    stale: list[str]
    marker_left: bool = False

    @property
    def bytes_to_write(self) -> int:
        return sum(f.size for f in self.write)

    @property
    def changes(self) -> bool:
        return bool(self.write or self.stale)


def make_plan(desired: list[BoardFile], manifest: Manifest, present: Mapping[str, int]) -> Plan:
    """Compare the wanted files with the manifest and the sizes of the files on the board (and the marker's)."""
    write: list[BoardFile] = []
    unchanged: list[BoardFile] = []
    for wanted in desired:
        entry = manifest.files.get(wanted.path)
        same = (
            entry is not None
            and entry.sha256 == wanted.sha256
            and entry.size == wanted.size
            and present.get(wanted.path) == wanted.size
        )
        (unchanged if same else write).append(wanted)
    wanted_paths = {f.path for f in desired}
    stale = sorted(p for p in manifest.files if p not in wanted_paths and p in present)
    return Plan(write, unchanged, stale, MARKER_PATH in present)


def marker_bytes(files: Iterable[BoardFile], started: str) -> bytes:
    """The marker's content: when the deploy started and a hash of everything it puts on the board."""
    firmware = hashlib.sha256("".join(f"{f.path} {f.sha256}\n" for f in files).encode()).hexdigest()
    return (
        f"camhub deploy started {started}, firmware sha256 {firmware}\n"
        "The node waits while this file exists; `camhub deploy` removes it when it has finished.\n"
    ).encode()
