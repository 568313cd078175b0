"""notif_worker's adapters: PostgreSQL (tables, repository), Kafka (the booking events consumer, the
protobuf codecs), Redis (the clinic feed's live fan-out), SMTP (the booking mails), the push inbox."""
