"""The HTTP side (aiohttp): dashboard, JSON API, streams, recordings, metrics.

It reaches the other parts only through the services the composition root hands it."""
