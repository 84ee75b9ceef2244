"""``camhub deploy``: the node firmware, its libraries and each board's settings onto a fleet of boards."""
