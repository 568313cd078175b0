"""Contract suites: the behaviour of a port written once, run against its fake (tests/unit) and its real
adapter on the embedded PostgreSQL (tests/integration), so a fake never drifts from what it stands for.
The modules here are not named test_*.py: pytest collects them only through those subclasses."""
