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
