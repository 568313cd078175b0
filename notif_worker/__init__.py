"""notif_worker: consumes the booking lifecycle topics → email, push inbox, reminders, clinic feed (gRPC stream)."""
