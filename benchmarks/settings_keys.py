"""What checking a board's settings.toml against the key list costs at start (issue #29).

``camhub_node.keys`` runs on the board once at start: it reads ``/settings.toml``, warns about each
unknown ``CAMHUB_*`` key and suggests the known key it probably meant. This runs the same code in a
board-sized VM (``benchmarks/vm_side.py settings``) on the template as deploy renders it, with no
unknown key and with three, and prints: the heap the imported list keeps, what importing it
(compiling ``keys.py``) allocates, bytes and microseconds per check, microseconds per suggestion,
and the heap still held after forgetting the module (interned strings stay).

The VM is MicroPython's Unix port (``camhub node --sim --runtime micropython``); ``--circuitpython
BINARY`` adds CircuitPython's own VM. Both are 64-bit: objects are about twice their ESP32 size,
and a desktop core is many times faster than an ESP32-S3's.

    .venv/bin/python benchmarks/settings_keys.py          # a few seconds
    .venv/bin/python benchmarks/settings_keys.py --circuitpython /path/to/circuitpython --rounds 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from camhub.sim import vm as nodevm  # noqa: E402

TYPOS = ('CAMHUB_HUB_PASWORD = "x"', "CAMHUB_FPSS = 5", "CAMHUB_QUALITY = 20")
HEAP = 1024 * 1024


def measure(binary: str, settings: Path, rounds: int) -> dict:
    call = f"import vm_side; vm_side.main(['settings', {str(settings)!r}, '{rounds}'])"
    argv = nodevm.vm_argv(binary, HEAP, [ROOT / "cameras", ROOT / "benchmarks"], call)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"{binary}: no result (exit {done.returncode}): {(done.stdout + done.stderr)[-800:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="checks timed per figure (default 100)")
    parser.add_argument("--circuitpython", metavar="BINARY", help="also on CircuitPython's VM (a unix-port build)")
    args = parser.parse_args()
    vms = {"micropython": nodevm.find_micropython()}
    if vms["micropython"] is None:
        raise SystemExit(nodevm.MISSING)
    if args.circuitpython:
        vms["circuitpython"] = args.circuitpython
    template = (ROOT / "settings.toml.example").read_text(encoding="utf-8")
    print(f"{'VM':<14} {'unknown':>7} {'kept B':>7} {'import B':>9} {'check B':>8} {'check us':>9} "
          f"{'suggest us':>10} {'after forget B':>14}")
    with tempfile.TemporaryDirectory(prefix="camhub-bench-keys-") as work:
        for label, extra in (("0", ()), (str(len(TYPOS)), TYPOS)):
            settings = Path(work) / f"settings-{label}.toml"
            settings.write_text(template + "".join(line + "\n" for line in extra), encoding="utf-8")
            for name, binary in vms.items():
                r = measure(binary, settings, args.rounds)
                print(f"{name:<14} {label:>7} {r['import_kept_bytes']:>7} {r['import_allocated_bytes']:>9} "
                      f"{r['check_bytes']:>8} {r['check_us']:>9.0f} {r['nearest_us']:>10.0f} "
                      f"{r['kept_after_forgetting_bytes']:>14}")


if __name__ == "__main__":
    main()
