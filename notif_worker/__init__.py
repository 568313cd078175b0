"""notif_worker: consumes booking.created → email, push inbox, clinic feed (gRPC stream)."""
