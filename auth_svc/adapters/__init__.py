"""auth_svc's adapters: the PostgreSQL repository (tables, queries), the mails (SMTP: invitations and the
account mails) and the common-passwords list."""
