"""Cameras coming in: which sources are allowed, node announces and messages, and the one pull per camera."""
