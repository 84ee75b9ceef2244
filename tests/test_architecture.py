"""The house rules hold: every module imports on its own, and the import contract and the types are kept.

Importing a module first, in an interpreter that has imported nothing of camhub yet, is how an import
circle shows itself (one module needs a name of another that is still half-initialised); a test
suite that imports everything in one order can hide that. So each module is imported first in a
fresh child (aiohttp's tests/test_circular_imports.py does the same). The children are forked from
one interpreter that has loaded the third-party libraries only, which keeps this a few seconds.
``make lint`` runs the import contract (lint-imports) and the type checker (mypy); ``make test``
runs ``make lint`` first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT

# Board-only modules (CircuitPython's board, espcamera): they import on a board, not here.
BOARD_ONLY = {"camhub_node.board", "camhub_node.boardcam"}
THIRD_PARTY = ["aiohttp", "aiohttp.web", "aiomqtt", "numpy", "PIL.Image", "av", "prometheus_client", "rich"]

CHILD = r"""
import importlib, json, os, signal, sys, traceback
for library in sys.argv[2:]:
    importlib.import_module(library)
assert not any(name == "camhub" or name.startswith(("camhub.", "camhub_node")) for name in sys.modules)
failed = {}
for module in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        signal.alarm(60)  # a module whose import never ends (it runs something) is killed, and fails
        try:
            importlib.import_module(module)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().encode()[-4000:])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as out:
        error = out.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed[module] = error or f"exit status {status}"
print(json.dumps(failed))
"""


def modules() -> list[str]:
    found = []
    for root, package in ((ROOT / "src", "camhub"), (ROOT / "cameras", "camhub_node")):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__main__" or parts[:2] == ("camhub", "shipped"):
                continue  # running it is `python -m camhub`; shipped/ is data (the board's code.py runs a node)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name not in BOARD_ONLY:
                found.append(name)
    return found


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    names = modules()
    assert "camhub.hub.app" in names and "camhub.hub.http.api" in names and len(names) > 60
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(names), *THIRD_PARTY], capture_output=True,
                          text=True, timeout=300, cwd=Path("/"))
    assert done.returncode == 0, done.stderr[-3000:]
    failed = json.loads(done.stdout.splitlines()[-1])
    assert failed == {}, "\n\n".join(f"{name}:\n{error}" for name, error in failed.items())
