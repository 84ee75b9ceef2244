# camhub camera node: the board's entry point (the same file runs on a PC with `camhub node --sim --from DIR`).
import os
import time

# `camhub deploy` writes this marker first and removes it last: while it exists lib/ may be half new,
# so import nothing from it. At the drive's root on a board; next to this file with --sim --from DIR.
_here = globals().get("__file__", "")
MARKER = (_here[:_here.rfind("/")] if "/" in _here else "") + "/camhub-deploying"


def deploying():
    try:
        os.stat(MARKER)
        return True
    except OSError:
        return False


if deploying():
    print("camhub: a deploy is in progress or was interrupted; waiting — re-run camhub deploy")
    while deploying():  # on a board, deleting the marker also autoreloads this file
        time.sleep(1)

from camhub_node import start  # noqa: E402 (only once the marker is gone)

start.main()
