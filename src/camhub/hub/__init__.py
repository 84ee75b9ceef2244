"""The hub service: discovery, one upstream pull per camera, fan-out to viewers, API and status."""
