"""auth_svc: users, argon2 credentials, signed JWT access tokens, rotating refresh tokens."""
