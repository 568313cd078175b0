"""auth_svc's adapters: the PostgreSQL repository (tables, queries) and the invitation mail (SMTP)."""
