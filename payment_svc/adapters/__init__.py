"""payment_svc's adapters: the PostgreSQL repository (tables.py, repository.py) and the Stripe gateway
(stripe.py, the official SDK)."""
