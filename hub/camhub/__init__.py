"""camhub: the hub service, the simulated node runner, the demo and the deploy tool."""

__version__ = "0.1.0"
