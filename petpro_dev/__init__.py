"""PetPro developer tooling, never imported by a deployed service.

The dev stack (embedded PostgreSQL, Redis, Kafka-protocol broker, SMTP sink; ``petpro up``), the
Stripe-compatible sandbox (:mod:`petpro_dev.stripe_sandbox`), the ``petpro`` CLI, the demo, the REST
client used by the demo, tests and benchmarks, the seed data and the code generator (``make gen``).
It may import the runtime kit (:mod:`petpro`) and the services; they never import it.
"""
