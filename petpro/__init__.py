"""PetPro shared runtime kit: what every deployed service imports, and nothing else.

It imports no service package and nothing of the dev tooling (``petpro_dev``); the generated contracts
are their own import root, ``petpro_api`` (``gen/petpro_api``; ``from petpro_api.booking.v1 import
booking_pb2``).  The import rules are contracts in pyproject.toml, checked by ``lint-imports``.
"""
