"""Access tokens: only our EdDSA signature, unexpired, is accepted."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.domain import Passwords, TokenExpired, TokenInvalid, TokenIssuer, User, split_refresh_token

NOW = datetime(2030, 1, 1, tzinfo=UTC)
USER = User(uuid.uuid4(), "a@b.co", "A", "hash", locale="de-AT")


def issuer(key=None):
    return TokenIssuer(
        key or Ed25519PrivateKey.generate(),
        issuer="petpro-auth",
        audience="petpro",
        ttl=timedelta(minutes=15),
    )


def test_round_trip_carries_the_principal():
    iss = issuer()
    sid = uuid.uuid4()
    token, exp = iss.issue(USER, sid, NOW)
    claims = iss.verify(token, NOW + timedelta(minutes=1))
    assert (claims.user_id, claims.session_id, claims.roles) == (str(USER.id), str(sid), ("OWNER",))
    assert claims.expires_at == exp
    assert claims.locale == "de-AT"  # the owner's language, for the booking events the owner's token starts


def test_expired_token_is_rejected():
    iss = issuer()
    token, _ = iss.issue(USER, uuid.uuid4(), NOW)
    with pytest.raises(TokenExpired):
        iss.verify(token, NOW + timedelta(minutes=16))


def test_token_signed_by_another_key_is_rejected():
    token, _ = issuer().issue(USER, uuid.uuid4(), NOW)
    with pytest.raises(TokenInvalid):
        issuer().verify(token, NOW)


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none_and_hs256_confusion_are_rejected():
    iss = issuer()
    good, _ = iss.issue(USER, uuid.uuid4(), NOW)
    payload = jwt.decode(good, options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': iss.kid})}.{_b64(payload)}."
    with pytest.raises(TokenInvalid):
        iss.verify(unsigned, NOW)
    hs = jwt.encode(
        payload, iss.x, algorithm="HS256", headers={"kid": iss.kid}
    )  # public key as an HMAC secret
    with pytest.raises(TokenInvalid):
        iss.verify(hs, NOW)


def test_passwords_verify_and_unknown_user_does_not_match():
    pw = Passwords()
    h = pw.hash("correct horse")
    assert pw.verify(h, "correct horse")
    assert not pw.verify(h, "wrong horse")
    assert not pw.verify(None, "correct horse")


def test_malformed_refresh_token_is_invalid():
    with pytest.raises(TokenInvalid):
        split_refresh_token("not-a-token")
