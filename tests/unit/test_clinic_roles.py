"""The role model: clinic memberships in the access token and the one membership check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.domain import Invitation, InvitationInvalid, TokenIssuer, User
from auth_svc.handlers import principal_of
from petpro.authn import (
    ClinicAdminRequired,
    ClinicNotVisible,
    PlatformAdminRequired,
    Principal,
    require_clinic,
    require_platform_admin,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
A, B = str(uuid.uuid4()), str(uuid.uuid4())


def principal(roles: set[str], memberships: dict[str, str] | None = None) -> Principal:
    m = memberships or {}
    return Principal("u", "u@x.co", "U", frozenset(roles), frozenset(m), NOW.timestamp() + 60, m)


ADMIN_A = principal({"CLINIC_STAFF"}, {A: "ADMIN"})
STAFF_A = principal({"CLINIC_STAFF"}, {A: "STAFF"})
SERVICE_A = principal({"SERVICE"}, {A: "ADMIN"})
OWNER = principal({"OWNER"})
PLATFORM = principal({"PLATFORM_ADMIN"})


@pytest.mark.parametrize(
    ("who", "clinic", "admin", "outcome"),
    [
        (ADMIN_A, A, True, "ADMIN"),
        (ADMIN_A, A, False, "ADMIN"),
        (STAFF_A, A, False, "STAFF"),
        (STAFF_A, A, True, ClinicAdminRequired),
        (SERVICE_A, A, True, "ADMIN"),
        (ADMIN_A, B, False, ClinicNotVisible),  # admin of A sees nothing of B
        (ADMIN_A, B, True, ClinicNotVisible),
        (STAFF_A, B, False, ClinicNotVisible),
        (SERVICE_A, B, False, ClinicNotVisible),  # a service account is scoped to its one clinic
        (OWNER, A, False, ClinicNotVisible),
        (PLATFORM, B, True, "ADMIN"),
    ],
)
def test_membership_matrix(who, clinic, admin, outcome):
    if isinstance(outcome, str):
        assert require_clinic(who, clinic, admin=admin) == outcome
    else:
        with pytest.raises(outcome):
            require_clinic(who, clinic, admin=admin)


def test_membership_grants_no_role_without_a_staff_or_service_role():
    # an owner token that somehow carries a clinic claim is still no member
    assert principal({"OWNER"}, {A: "ADMIN"}).clinic_role(A) is None


def test_only_platform_admins_pass_the_platform_check():
    require_platform_admin(PLATFORM)
    for who in (ADMIN_A, STAFF_A, SERVICE_A, OWNER):
        with pytest.raises(PlatformAdminRequired):
            require_platform_admin(who)


def issuer(key: Ed25519PrivateKey) -> TokenIssuer:
    return TokenIssuer(key, issuer="petpro-auth", audience="petpro", ttl=timedelta(minutes=15))


def test_token_carries_clinic_roles_into_the_principal():
    iss = issuer(Ed25519PrivateKey.generate())
    user = User(
        uuid.uuid4(), "s@x.co", "S", "h", roles=("CLINIC_STAFF",), memberships={A: "ADMIN", B: "STAFF"}
    )
    token, _ = iss.issue(user, uuid.uuid4(), NOW)
    claims = iss.verify(token, NOW)
    assert claims.memberships == {A: "ADMIN", B: "STAFF"}
    p = principal_of(claims)
    assert (p.clinic_role(A), p.clinic_role(B)) == ("ADMIN", "STAFF")
    assert p.can_manage_clinic(A) and not p.can_manage_clinic(B) and p.can_read_clinic(B)


def test_tokens_from_before_clinic_roles_read_as_staff():
    key = Ed25519PrivateKey.generate()
    iss = issuer(key)
    payload = {
        "iss": "petpro-auth",
        "aud": "petpro",
        "sub": "u",
        "roles": ["CLINIC_STAFF"],
        "clinics": [A],
        "sid": str(uuid.uuid4()),
        "jti": "j",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60,
    }
    claims = iss.verify(jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": iss.kid}), NOW)
    assert claims.memberships == {A: "STAFF"}


def test_an_invented_clinic_role_in_a_claim_grants_nothing():
    key = Ed25519PrivateKey.generate()
    iss = issuer(key)
    payload = {
        "iss": "petpro-auth",
        "aud": "petpro",
        "sub": "u",
        "roles": ["CLINIC_STAFF"],
        "clinics": {A: "OWNER_OF_EVERYTHING"},
        "sid": str(uuid.uuid4()),
        "jti": "j",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60,
    }
    assert (
        iss.verify(jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": iss.kid}), NOW).memberships
        == {}
    )


def invitation(**kw) -> Invitation:
    base = {
        "id": uuid.uuid4(),
        "clinic_id": uuid.UUID(A),
        "email": "n@x.co",
        "role": "STAFF",
        "token_hash": "h",
        "invited_by": uuid.uuid4(),
        "expires_at": NOW + timedelta(hours=1),
        "created_at": NOW,
    }
    return Invitation(**{**base, **kw})


def test_invitation_is_single_use_and_expires():
    invitation().check_usable(NOW)
    with pytest.raises(InvitationInvalid):
        invitation(accepted_at=NOW).check_usable(NOW)
    with pytest.raises(InvitationInvalid):
        invitation().check_usable(NOW + timedelta(hours=1))
