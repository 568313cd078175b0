"""auth_svc: users and their profile, credentials, JWT access tokens, sessions, reset and verify mails."""
