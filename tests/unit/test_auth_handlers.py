"""AuthHandlers with a fake unit of work: register, login, refresh-token rotation and reuse
detection, validation against revocation, logout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.domain import (
    EmailTaken,
    InvalidCredentials,
    Passwords,
    TokenExpired,
    TokenInvalid,
    TokenIssuer,
    TokenRevoked,
)
from auth_svc.handlers import AuthHandlers
from tests.unit.fakes.auth import AuthStore, auth_uow

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # real argon2id, cheap parameters


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def env():
    store, clock = AuthStore(), Clock()
    issuer = TokenIssuer(
        Ed25519PrivateKey.generate(), issuer="petpro-auth", audience="petpro", ttl=timedelta(minutes=15)
    )
    h = AuthHandlers(
        auth_uow(store),
        Passwords(FAST),
        issuer,
        refresh_ttl=timedelta(days=30),
        clock=clock,
        read=auth_uow(store),
    )
    return h, store, clock


async def test_register_normalises_the_email_and_rejects_duplicates(env):
    h, store, _ = env
    user = await h.register("  Ana@Example.TEST ", "correct horse", " Ana ")
    assert (user.email, user.name, user.roles) == ("ana@example.test", "Ana", ("OWNER",))
    assert store.users[user.id].password_hash != "correct horse"
    with pytest.raises(EmailTaken):
        await h.register("ana@example.test", "other password", "Ana 2")
    assert len(store.users) == 1


async def test_login_issues_a_session_and_tokens(env):
    h, store, _ = env
    user = await h.register("ana@example.test", "correct horse", "Ana")
    pair = await h.login("ANA@example.test", "correct horse")
    assert pair.user.id == user.id and pair.expires_in == 15 * 60
    [session] = store.sessions.values()
    assert pair.refresh_token.startswith(f"{session.id}.")
    claims = await h.validate(pair.access_token)
    assert (claims.user_id, claims.session_id) == (str(user.id), str(session.id))


async def test_wrong_password_and_unknown_email_look_the_same(env):
    h, store, _ = env
    await h.register("ana@example.test", "correct horse", "Ana")
    for email, password in (("ana@example.test", "wrong"), ("nobody@example.test", "correct horse")):
        with pytest.raises(InvalidCredentials) as exc:
            await h.login(email, password)
        assert str(exc.value) == "email or password is wrong"
    assert store.sessions == {}


async def test_login_rehashes_a_password_hashed_with_old_parameters(env):
    h, store, _ = env
    user = await h.register("ana@example.test", "correct horse", "Ana")
    old = PasswordHasher(time_cost=2, memory_cost=8, parallelism=1).hash("correct horse")
    store.users[user.id].password_hash = old
    await h.login("ana@example.test", "correct horse")
    assert store.users[user.id].password_hash != old
    assert not FAST.check_needs_rehash(store.users[user.id].password_hash)


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(env):
    h, store, clock = env
    await h.register("ana@example.test", "correct horse", "Ana")
    pair = await h.login("ana@example.test", "correct horse")
    clock.now += timedelta(minutes=20)
    rotated = await h.refresh(pair.refresh_token)
    assert rotated.refresh_token != pair.refresh_token
    assert (await h.validate(rotated.access_token)).session_id == pair.refresh_token.split(".")[0]
    with pytest.raises(TokenRevoked):  # the consumed token again: theft, the whole session ends
        await h.refresh(pair.refresh_token)
    [session] = store.sessions.values()
    assert session.revoked_at == clock.now
    with pytest.raises(TokenRevoked):
        await h.refresh(rotated.refresh_token)
    with pytest.raises(TokenRevoked):
        await h.validate(rotated.access_token)


async def test_refresh_rejects_unknown_malformed_and_expired_tokens(env):
    h, _, clock = env
    await h.register("ana@example.test", "correct horse", "Ana")
    pair = await h.login("ana@example.test", "correct horse")
    with pytest.raises(TokenInvalid):
        await h.refresh("not-a-token")
    with pytest.raises(TokenInvalid):
        await h.refresh(f"00000000-0000-4000-8000-000000000000.{pair.refresh_token.split('.')[1]}")
    clock.now += timedelta(days=31)
    with pytest.raises(TokenInvalid):
        await h.refresh(pair.refresh_token)


async def test_validate_checks_expiry(env):
    h, _, clock = env
    await h.register("ana@example.test", "correct horse", "Ana")
    pair = await h.login("ana@example.test", "correct horse")
    clock.now += timedelta(minutes=16)
    with pytest.raises(TokenExpired):
        await h.validate(pair.access_token)


@pytest.mark.parametrize("which", ["access", "refresh"])
async def test_revoke_ends_the_session_by_either_token(env, which):
    h, store, clock = env
    await h.register("ana@example.test", "correct horse", "Ana")
    pair = await h.login("ana@example.test", "correct horse")
    await h.revoke(pair.access_token if which == "access" else pair.refresh_token)
    [session] = store.sessions.values()
    assert session.revoked_at == clock.now
    with pytest.raises(TokenRevoked):
        await h.validate(pair.access_token)


async def test_revoke_ignores_invalid_tokens(env):
    h, store, _ = env
    await h.register("ana@example.test", "correct horse", "Ana")
    pair = await h.login("ana@example.test", "correct horse")
    sid = pair.refresh_token.split(".")[0]
    for token in ("garbage", "a.b.c", f"{sid}.wrong-secret"):
        await h.revoke(token)
    assert all(s.revoked_at is None for s in store.sessions.values())
