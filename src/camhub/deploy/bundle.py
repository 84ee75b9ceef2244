"""The files a board needs: ``code.py``, the node package and every library the firmware imports.

Libraries are found by reading the firmware's imports (``ast``, never by importing it), mapping each
top-level module to the installed distribution that provides it (``importlib.metadata``), and
following that library's own imports in turn. Only CircuitPython library distributions
(``adafruit-circuitpython-*``, ``circuitpython-*``) are copied: modules built into CircuitPython
(``wifi``, ``socketpool``, ``espcamera``, ``time`` …) have no such distribution, and PC-only ones
(Pillow for the simulated camera, Blinka) are not for a board. A library's files come from its
distribution's RECORD, not from importing it — CircuitPython's ``asyncio`` installs a top-level
``asyncio/`` that CPython's own stdlib shadows. Imports a library guards with ``except ImportError``
are optional and not followed (``circuitpython_typing`` and friends are for type checkers).

With ``--bundle DIR`` the same libraries are taken as ``.mpy`` from a CircuitPython library bundle
(``adafruit-circuitpython-bundle-<N>.x-mpy-<date>/lib/``), or from a directory holding several such
bundles (circup's cache), choosing the one for the board's CircuitPython major version.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as metadata
import importlib.util
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from camhub.resources import shipped

CIRCUITPYTHON_DISTS = ("adafruit-circuitpython-", "circuitpython-")
NODE_PACKAGE = "camhub_node"
BUNDLE_NAME = re.compile(r"-(\d+)\.x-mpy(?:-|$)")
SKIP_NAMES = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


class BundleError(ValueError):
    """The firmware or its libraries cannot be assembled."""


@dataclass(frozen=True)
class BoardFile:
    """One file as it will sit on the board (``path`` is relative to the drive root, '/'-separated)."""

    path: str
    data: bytes = field(repr=False)
    origin: str = ""

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Library:
    """A library the firmware needs: its import name and where its files come from."""

    module: str
    dist: str | None
    version: str | None
    source: str  # "installed" or the bundle directory's name
    files: tuple[tuple[str, Path], ...]  # (path under lib/, file on this PC)

    def describe(self) -> str:
        if self.source == "installed":
            return f"{self.module} ({self.dist} {self.version}, .py)"
        return f"{self.module} ({self.source}, .mpy)"


@dataclass(frozen=True)
class FirmwareSet:
    """The files shared by every board (all but settings.toml) and where their libraries came from."""

    libraries: tuple[Library, ...]
    library_files: tuple[BoardFile, ...]
    node_files: tuple[BoardFile, ...]
    code_py: BoardFile
    source: str  # one line for the user: which libraries were used

    def files_with(self, settings: BoardFile) -> list[BoardFile]:
        """Every file for one board, in the safe write order: libraries, package, settings, code.py."""
        return [*self.library_files, *self.node_files, settings, self.code_py]


# ---- the firmware ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Firmware:
    """Where the node firmware comes from: the board's ``code.py`` and the node package's directory."""

    code_py: Path
    package: Path

    def __str__(self) -> str:
        return f"{self.code_py} and {self.package}"


def find_firmware(explicit: Path | None = None) -> Firmware:
    """``code.py`` and ``camhub_node/``: from ``explicit`` (a directory holding both), else the installed ones.

    Installed, ``code.py`` is package data of camhub (the tree's ``cameras/code.py``) and the node package
    is the importable ``camhub_node``, wherever the installation put them.
    """
    if explicit is not None:
        root = explicit.expanduser().resolve()
        firmware = Firmware(root / "code.py", root / NODE_PACKAGE)
        problem = f"{root} is not the node firmware: it needs code.py and {NODE_PACKAGE}/"
    else:
        spec = importlib.util.find_spec(NODE_PACKAGE)
        if spec is None or spec.origin is None:
            raise BundleError(f"the {NODE_PACKAGE} package is not installed; pass --firmware DIR")
        firmware = Firmware(shipped("code.py").resolve(), Path(spec.origin).resolve().parent)
        problem = f"the installed firmware is incomplete ({firmware}); reinstall camhub or pass --firmware DIR"
    if not firmware.code_py.is_file() or not (firmware.package / "__init__.py").is_file():
        raise BundleError(problem)
    return firmware


def _tree(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_file() and not SKIP_NAMES.intersection(rel.parts) and path.suffix not in SKIP_SUFFIXES:
            yield path


def firmware_sources(firmware: Firmware) -> tuple[BoardFile, list[BoardFile]]:
    """``code.py`` and the node package as they go on a board (package under ``lib/``)."""
    code = BoardFile("code.py", firmware.code_py.read_bytes(), origin=str(firmware.code_py))
    package = firmware.package
    files = [
        BoardFile(str(PurePosixPath("lib", NODE_PACKAGE, *p.relative_to(package).parts)), p.read_bytes(), str(p))
        for p in _tree(package)
    ]
    return code, files


# ---- imports -----------------------------------------------------------------------------------


def imported_modules(source: str | bytes, filename: str = "<source>") -> tuple[set[str], set[str]]:
    """Top-level modules imported by ``source``: (required, optional).

    An import inside a ``try`` that handles ``ImportError`` (or ``ModuleNotFoundError``, or anything)
    is optional. Relative imports are the module's own package and are not returned.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise BundleError(f"{filename}: cannot read its imports: {exc}") from None
    required: set[str] = set()
    optional: set[str] = set()

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try | ast.TryStar) and _catches_import_error(node):
            for child in ast.iter_child_nodes(node):
                visit(child, True)
            return
        if isinstance(node, ast.If):
            # `if sys.implementation.name != "circuitpython":` and `if TYPE_CHECKING:` blocks never
            # run on a board: their imports are not the board's.
            on_board = _runs_on_circuitpython(node.test)
            branches = {True: node.body, False: node.orelse, None: [*node.body, *node.orelse]}[on_board]
            for child in branches:
                visit(child, guarded)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            (optional if guarded else required).add(name.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return required, optional - required


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _runs_on_circuitpython(test: ast.expr) -> bool | None:
    """Whether an ``if`` test is true on CircuitPython: True/False when it can tell, else None."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _runs_on_circuitpython(test.operand)
        return None if inner is None else not inner
    if _dotted(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
        return False
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and _dotted(test.left) == "sys.implementation.name"
        and isinstance(test.comparators[0], ast.Constant)
        and isinstance(test.comparators[0].value, str)
    ):
        equal = test.comparators[0].value == "circuitpython"
        if isinstance(test.ops[0], ast.Eq):
            return equal
        if isinstance(test.ops[0], ast.NotEq):
            return not equal
    return None


def _catches_import_error(node: ast.Try | ast.TryStar) -> bool:
    for handler in node.handlers:
        kinds = handler.type
        if kinds is None:
            return True
        elts = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
        for elt in elts:
            if isinstance(elt, ast.Name) and elt.id in ("ImportError", "ModuleNotFoundError", "Exception"):
                return True
    return False


# ---- libraries from the installed distributions ------------------------------------------------


def _is_circuitpython_dist(name: str) -> bool:
    return re.sub(r"[-_.]+", "-", name).lower().startswith(CIRCUITPYTHON_DISTS)


def _installed_library(module: str, providers: dict[str, list[str]]) -> Library | None:
    """``module`` from the CircuitPython distribution that installs it, or None (built-in / PC-only)."""
    for dist_name in providers.get(module, []):
        if not _is_circuitpython_dist(dist_name):
            continue
        dist = metadata.distribution(dist_name)
        files: list[tuple[str, Path]] = []
        for entry in dist.files or ():
            parts = PurePosixPath(str(entry)).parts
            top = parts[0] if parts else ""
            if top != module and top not in (f"{module}.py", f"{module}.mpy"):
                continue
            if SKIP_NAMES.intersection(parts) or PurePosixPath(str(entry)).suffix in SKIP_SUFFIXES:
                continue
            files.append(("/".join(parts), Path(str(dist.locate_file(entry)))))
        if not files:
            raise BundleError(f"{dist_name} is installed but lists no files for {module} in its RECORD")
        return Library(module, dist.metadata["Name"], dist.version, "installed", tuple(sorted(files)))
    return None


def resolve_libraries(firmware: Firmware) -> tuple[list[Library], list[str]]:
    """Every library ``firmware`` needs, dependencies included, and the modules skipped."""
    providers = metadata.packages_distributions()
    local = {NODE_PACKAGE} | {p.stem for p in firmware.code_py.parent.glob("*.py")}
    queue: list[str] = []
    for path in [firmware.code_py, *(_tree(firmware.package))]:
        if path.suffix == ".py":
            required, optional = imported_modules(path.read_bytes(), str(path))
            # The firmware is ours: a guarded import of a library means "use it when present", so ship it.
            queue += sorted(required | optional)
    found: dict[str, Library] = {}
    skipped: set[str] = set()
    while queue:
        module = queue.pop(0)
        if module in found or module in skipped or module in local:
            continue
        library = _installed_library(module, providers)
        if library is None:
            skipped.add(module)
            continue
        found[module] = library
        for rel, path in library.files:
            if rel.endswith(".py"):
                required, _optional = imported_modules(path.read_bytes(), str(path))
                queue += sorted(required)
    return [found[m] for m in sorted(found)], sorted(skipped)


# ---- libraries from a CircuitPython bundle -----------------------------------------------------


@dataclass(frozen=True)
class BundleDir:
    """One CircuitPython library bundle's ``lib/`` directory."""

    lib: Path
    name: str
    major: int | None


def bundles_in(directory: Path) -> list[BundleDir]:
    """The bundle(s) in ``directory``: a bundle root, its ``lib/``, or a folder of bundles (circup's cache)."""
    directory = directory.expanduser().resolve()
    if not directory.is_dir():
        raise BundleError(f"--bundle {directory}: no such directory")

    def major_of(name: str) -> int | None:
        match = BUNDLE_NAME.search(name)
        return int(match.group(1)) if match else None

    if (directory / "lib").is_dir():
        return [BundleDir(directory / "lib", directory.name, major_of(directory.name))]
    if directory.name == "lib":
        return [BundleDir(directory, directory.parent.name, major_of(directory.parent.name))]
    found = [
        BundleDir(child / "lib", child.name, major_of(child.name))
        for child in sorted(directory.rglob("*"))
        if child.is_dir() and (child / "lib").is_dir() and major_of(child.name) is not None
    ]
    if not found:
        raise BundleError(
            f"--bundle {directory}: no CircuitPython library bundle here (expected lib/ or "
            "adafruit-circuitpython-bundle-<N>.x-mpy-<date>/lib/)"
        )
    return found


def choose_bundle(bundles: list[BundleDir], major: int) -> BundleDir:
    """The bundle for CircuitPython ``major``; a bundle of unknown version is used as is."""
    matching = [b for b in bundles if b.major == major]
    if matching:
        return sorted(matching, key=lambda b: b.name)[-1]  # names end in the release date
    unknown = [b for b in bundles if b.major is None]
    if unknown:
        return unknown[0]
    have = ", ".join(sorted({f"{b.major}.x" for b in bundles}))
    raise BundleError(
        f"the board runs CircuitPython {major}.x but the bundle holds .mpy for {have}: "
        f".mpy files only load on the major version they were built for (get the {major}.x bundle)"
    )


def bundle_library(bundle: BundleDir, module: str) -> Library | None:
    """``module`` from the bundle (a package directory, a ``.mpy`` or a ``.py``), or None."""
    package = bundle.lib / module
    if package.is_dir():
        files = tuple(
            ("/".join((module, *p.relative_to(package).parts)), p) for p in _tree(package)
        )
        return Library(module, None, None, bundle.name, files) if files else None
    for suffix in (".mpy", ".py"):
        single = bundle.lib / f"{module}{suffix}"
        if single.is_file():
            return Library(module, None, None, bundle.name, ((single.name, single),))
    return None


# ---- the shared file set -----------------------------------------------------------------------


def _library_files(libraries: Iterable[Library]) -> list[BoardFile]:
    files: list[BoardFile] = []
    for library in libraries:
        for rel, path in library.files:
            files.append(BoardFile(f"lib/{rel}", path.read_bytes(), str(path)))
    return files


class FirmwareBuilder:
    """Builds (and caches per CircuitPython major version) the files every board shares."""

    def __init__(self, firmware: Firmware, bundle_dir: Path | None = None) -> None:
        self.firmware = firmware
        self.code_py, self.node_files = firmware_sources(firmware)
        self.installed, self.skipped = resolve_libraries(firmware)
        self.bundles = bundles_in(bundle_dir) if bundle_dir is not None else None
        self._cache: dict[int | None, FirmwareSet] = {}

    def for_major(self, major: int | None) -> FirmwareSet:
        """The file set for a board running CircuitPython ``major`` (None: unknown, .py only)."""
        key = major if self.bundles is not None else None
        if key not in self._cache:
            self._cache[key] = self._build(key)
        return self._cache[key]

    def _build(self, major: int | None) -> FirmwareSet:
        libraries = list(self.installed)
        source = "installed packages (.py): " + ", ".join(f"{lib.dist} {lib.version}" for lib in libraries)
        if self.bundles is not None:
            if major is None:
                raise BundleError("cannot choose .mpy libraries: the board's CircuitPython version is unknown")
            bundle = choose_bundle(self.bundles, major)
            chosen: list[Library] = []
            fallback: list[str] = []
            for library in libraries:
                from_bundle = bundle_library(bundle, library.module)
                if from_bundle is None:
                    fallback.append(library.module)
                chosen.append(from_bundle or library)
            # Modules no installed distribution provides may still be bundle libraries.
            for module in self.skipped:
                extra = bundle_library(bundle, module)
                if extra is not None:
                    chosen.append(extra)
            libraries = sorted(chosen, key=lambda lib: lib.module)
            source = f"bundle {bundle.name} (.mpy)"
            if fallback:
                source += f"; not in the bundle, so .py from installed packages: {', '.join(fallback)}"
        return FirmwareSet(
            libraries=tuple(libraries),
            library_files=tuple(_library_files(libraries)),
            node_files=tuple(self.node_files),
            code_py=self.code_py,
            source=source,
        )
