"""Domain errors and their one mapping to gRPC status.

Domain code raises these plain exceptions (no gRPC import needed there); the kit's server interceptor
turns them into a ``google.rpc.Status`` with an ``ErrorInfo{reason, domain}`` and, for invalid
arguments, a ``BadRequest`` with field violations.  Anything else becomes INTERNAL without details.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """Error kinds, named after the gRPC codes they map to (see :data:`petpro.interceptors`)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = (
        "INTERNAL"  # a server fault (an upstream's INTERNAL/UNKNOWN/DATA_LOSS): 500, never "retry later"
    )


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str = ""


class DomainError(Exception):
    """Base of every expected error.  ``reason`` is a stable UPPER_SNAKE machine-readable code."""

    kind: Kind = Kind.FAILED_PRECONDITION
    reason: str = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: list[FieldViolation] | tuple[FieldViolation, ...] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    kind = Kind.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str, reason: str = "") -> InvalidArgument:
        return cls(f"{field}: {description}", violations=[FieldViolation(field, description, reason)])


class FailedPrecondition(DomainError):
    kind = Kind.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    kind = Kind.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(DomainError):
    kind = Kind.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    kind = Kind.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class Conflict(DomainError):
    """Concurrency conflict (the resource changed under the caller): ABORTED, HTTP 409."""

    kind = Kind.ABORTED
    reason = "CONFLICT"


class ResourceExhausted(DomainError):
    kind = Kind.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"


class Unavailable(DomainError):
    kind = Kind.UNAVAILABLE
    reason = "UNAVAILABLE"
