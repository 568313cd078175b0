"""Contract suites: the behaviour of a port written once, run against its fake (unit) and its real adapter (integration)."""
