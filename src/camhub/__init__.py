"""camhub: the hub service, the simulated node runner, the demo and the deploy tool."""

from importlib import metadata

# The one version is camhub_node.__version__ (a board has no importlib.metadata); pyproject makes it the
# distribution's. Read from the metadata, not by importing camhub_node: `camhub node --sim --from DIR`
# must import the node package from DIR/lib, not find the installed one already loaded.
try:
    __version__ = metadata.version("camhub")
except metadata.PackageNotFoundError:  # run from a tree that was never installed
    __version__ = "unknown"
