"""auth_svc's use cases: accounts and tokens, the owner's account (reset, verification, sessions,
profile), clinic staff and invitations, service accounts."""

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
from auth_svc.handlers.deletion import AccountDeletion, AccountHasRoles
from auth_svc.handlers.my_account import (
    LINK_FAILURES_PER_SOURCE,
    PASSWORD_CHECK_PER_ACCOUNT_AND_SOURCE,
    RESET_PER_ACCOUNT,
    RESET_PER_SOURCE,
    VERIFICATION_PER_ACCOUNT,
    AccountHandlers,
    AccountRules,
    EmailAlreadyVerified,
)
from auth_svc.handlers.service_accounts import ServiceAccountHandlers, ServiceCredentials
from auth_svc.handlers.staff import ClinicStaffHandlers, InvitationSender

__all__ = [
    "LINK_FAILURES_PER_SOURCE",
    "LOGIN_PER_ACCOUNT_AND_SOURCE",
    "LOGIN_PER_SOURCE",
    "PASSWORD_CHECK_PER_ACCOUNT_AND_SOURCE",
    "REGISTER_PER_SOURCE",
    "RESET_PER_ACCOUNT",
    "RESET_PER_SOURCE",
    "VERIFICATION_PER_ACCOUNT",
    "AccountDeletion",
    "AccountHandlers",
    "AccountHasRoles",
    "AccountRules",
    "AuthHandlers",
    "ClinicStaffHandlers",
    "EmailAlreadyVerified",
    "InvitationSender",
    "LocalAuthenticator",
    "NoThrottle",
    "ServiceAccountHandlers",
    "ServiceCredentials",
    "TokenPair",
    "principal_of",
]
