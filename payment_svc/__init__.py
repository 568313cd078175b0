"""payment_svc: Stripe checkout sessions (official SDK), signed webhooks, refunds."""
