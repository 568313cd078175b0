"""booking_svc: catalog, pets, slot holds with TTL, confirmed bookings; source of truth for slots."""
