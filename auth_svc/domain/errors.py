"""Auth's domain errors (each maps to a gRPC status through the kit's interceptor)."""

from __future__ import annotations

from petpro.errors import AlreadyExists, FailedPrecondition, NotFound, Unauthenticated


class EmailTaken(AlreadyExists):
    reason = "EMAIL_TAKEN"


class InvalidCredentials(Unauthenticated):
    reason = "INVALID_CREDENTIALS"


class TokenInvalid(Unauthenticated):
    reason = "TOKEN_INVALID"


class TokenExpired(Unauthenticated):
    reason = "TOKEN_EXPIRED"


class TokenRevoked(Unauthenticated):
    reason = "TOKEN_REVOKED"


class InvitationInvalid(FailedPrecondition):
    """Unknown, already used, replaced or expired invitation token."""

    reason = "INVITATION_INVALID"


class LastClinicAdmin(FailedPrecondition):
    reason = "LAST_CLINIC_ADMIN"


class MemberNotFound(NotFound):
    reason = "MEMBER_NOT_FOUND"


class ServiceAccountNotFound(NotFound):
    reason = "SERVICE_ACCOUNT_NOT_FOUND"


class LinkTokenInvalid(FailedPrecondition):
    """A password-reset or verification token that cannot be used; the reason says why:
    LINK_TOKEN_UNKNOWN (never issued, or replaced by a newer one), LINK_TOKEN_EXPIRED,
    LINK_TOKEN_USED, LINK_TOKEN_OTHER_ACCOUNT (issued for another account or email address)."""

    reason = "LINK_TOKEN_UNKNOWN"


class WrongPassword(FailedPrecondition):
    """The current password given to confirm a change (password, email) is wrong.  Not
    UNAUTHENTICATED: the caller's token is fine, so a client must not log them out for it."""

    reason = "WRONG_PASSWORD"


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"


class SessionNotFound(NotFound):
    """No session of the caller has this refresh token (another account's token says the same)."""

    reason = "SESSION_NOT_FOUND"
