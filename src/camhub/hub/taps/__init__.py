"""What sees every frame through the broker's per-feed taps: motion detection and recordings."""
