"""MQTT as plumbing: the link (one connection, a bounded publish queue), the topics of the contract,
the embedded broker."""
