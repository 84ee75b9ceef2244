"""Several hubs as one (``CAMHUB_ROLE`` origin or edge): members, camera ownership, hub-to-hub pulls."""
