"""auth_svc's use cases: accounts and tokens, clinic staff and invitations, service accounts."""

from auth_svc.handlers.accounts import (
    LOGIN_PER_ACCOUNT_AND_SOURCE,
    LOGIN_PER_SOURCE,
    REGISTER_PER_SOURCE,
    AuthHandlers,
    LocalAuthenticator,
    NoThrottle,
    TokenPair,
    principal_of,
)
from auth_svc.handlers.service_accounts import ServiceAccountHandlers, ServiceCredentials
from auth_svc.handlers.staff import ClinicStaffHandlers, InvitationSender

__all__ = [
    "LOGIN_PER_ACCOUNT_AND_SOURCE",
    "LOGIN_PER_SOURCE",
    "REGISTER_PER_SOURCE",
    "AuthHandlers",
    "ClinicStaffHandlers",
    "InvitationSender",
    "LocalAuthenticator",
    "NoThrottle",
    "ServiceAccountHandlers",
    "ServiceCredentials",
    "TokenPair",
    "principal_of",
]
