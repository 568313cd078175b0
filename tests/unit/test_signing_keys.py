"""Signing-key rotation: tokens carry the signing key's ``kid``, several keys verify at once, the
newest signs, a retired key's tokens are rejected; the key directory convention every replica shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.domain import TokenInvalid, TokenIssuer, User, VerificationKey
from petpro import keys

NOW = datetime(2030, 1, 1, tzinfo=UTC)
USER = User(uuid.uuid4(), "a@b.co", "A", "hash")


def _issuer(store: list[Ed25519PrivateKey], reload_after: float = 3600.0) -> TokenIssuer:
    return TokenIssuer(
        list(store),
        issuer="petpro-auth",
        audience="petpro",
        ttl=timedelta(minutes=15),
        load=lambda: list(store),
        reload_after=reload_after,
    )


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_rotate_old_token_still_valid_new_tokens_use_the_new_kid_retired_key_rejected():
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    store = [first]
    iss = _issuer(store)
    old, _ = iss.issue(USER, uuid.uuid4(), NOW)
    assert _kid(old) == VerificationKey.of(first).kid

    store.append(second)  # rotate: a newer key joins the store
    iss.reload()
    assert [k["kid"] for k in iss.jwks()] == [VerificationKey.of(first).kid, VerificationKey.of(second).kid]
    new, _ = iss.issue(USER, uuid.uuid4(), NOW)
    assert _kid(new) == VerificationKey.of(second).kid != _kid(old)
    assert iss.verify(old, NOW).user_id == str(USER.id)  # signed before the rotation: still valid
    assert iss.verify(new, NOW).user_id == str(USER.id)

    store.remove(first)  # retire the old key (after its tokens expired)
    iss.reload()
    with pytest.raises(TokenInvalid, match="retired"):
        iss.verify(old, NOW)
    assert iss.verify(new, NOW).user_id == str(USER.id)
    assert [k["kid"] for k in iss.jwks()] == [VerificationKey.of(second).kid]


def test_a_replica_that_has_not_reloaded_yet_accepts_a_token_of_the_new_key():
    store = [Ed25519PrivateKey.generate()]
    lagging = _issuer(store, reload_after=0)
    store.append(Ed25519PrivateKey.generate())
    rotated = _issuer(store)  # another replica, already signing with the new key
    token, _ = rotated.issue(USER, uuid.uuid4(), NOW)
    assert lagging.verify(token, NOW).user_id == str(USER.id)  # unknown kid → one reload → known
    assert lagging.kid == rotated.kid


def test_unknown_kid_and_missing_kid_are_invalid_without_a_store_hit():
    iss = _issuer([Ed25519PrivateKey.generate()])
    foreign = _issuer([Ed25519PrivateKey.generate()])
    token, _ = foreign.issue(USER, uuid.uuid4(), NOW)
    with pytest.raises(TokenInvalid):
        iss.verify(token, NOW)
    payload = jwt.decode(token, options={"verify_signature": False})
    no_kid = jwt.encode(payload, iss.ring.signing.private, algorithm="EdDSA")
    with pytest.raises(TokenInvalid, match="key id"):
        iss.verify(no_kid, NOW)


def test_an_emptied_store_keeps_the_keys_it_had():
    store = [Ed25519PrivateKey.generate()]
    iss = _issuer(store)
    store.clear()
    iss.reload()
    assert len(iss.jwks()) == 1


def test_key_directory_newest_name_signs_and_a_first_key_is_created(tmp_path):
    directory = tmp_path / "auth-signing"
    (first,) = keys.load_or_create_key_dir(directory)
    assert [p.name for p in keys.key_files(directory)] == [keys.FIRST_KEY_NAME]
    added = keys.add_key(directory, datetime(2026, 12, 1, 18, 30, tzinfo=UTC))
    later = keys.add_key(directory, datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    assert [p.name for p in keys.key_files(directory)] == [keys.FIRST_KEY_NAME, added.name, later.name]
    loaded = keys.load_key_dir(directory)
    assert VerificationKey.of(loaded[0]).kid == VerificationKey.of(first).kid
    iss = TokenIssuer(loaded, issuer="i", audience="a", ttl=timedelta(minutes=1))
    assert iss.kid == VerificationKey.of(keys.load_key_dir(directory)[-1]).kid
    (directory / ".hidden.pem").write_text("not a key")  # mounted Secrets keep hidden bookkeeping files
    assert len(keys.load_key_dir(directory)) == 3


def test_a_file_that_is_not_an_ed25519_key_is_named(tmp_path):
    (tmp_path / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SystemExit, match=r"bad\.pem|signing keys"):
        keys.load_or_create_key_dir(tmp_path)
