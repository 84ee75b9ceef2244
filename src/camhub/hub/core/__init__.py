"""The hub's own model: cameras and their registry, options, controls, identity, events, and the frame broker."""
