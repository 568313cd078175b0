"""Everything booking_svc touches outside itself: PostgreSQL (tables, repository), the event codecs, and
PaymentService (refunds)."""
