"""The edge's token cache (cachetools TLRU): brief, bounded by LRU, never past the token's expiry; a revoked
token works at most the cache's ttl after its session ended."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from petpro.authn import Authenticator, Principal, TokenCache
from petpro.errors import Unauthenticated
from petpro_api.auth.v1 import auth_pb2


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(expires_at: float, user: str = "u1") -> Principal:
    return Principal(user, f"{user}@example.test", "U", frozenset({"OWNER"}), frozenset(), expires_at)


def test_entry_lives_for_the_ttl() -> None:
    clock = Clock()
    cache = TokenCache(ttl=5, timer=clock)
    p = principal(clock.now + 900)
    cache.put("t", p)
    clock.now += 4.9
    assert cache.get("t") == p
    clock.now += 0.2
    assert cache.get("t") is None


def test_never_past_the_tokens_own_expiry() -> None:
    clock = Clock()
    cache = TokenCache(ttl=60, timer=clock)
    cache.put("t", principal(clock.now + 2))
    clock.now += 1.9
    assert cache.get("t") is not None
    clock.now += 0.2
    assert cache.get("t") is None


def test_an_expired_token_is_not_cached() -> None:
    clock = Clock()
    cache = TokenCache(ttl=5, timer=clock)
    cache.put("t", principal(clock.now - 1))
    assert cache.get("t") is None
    assert cache.size == 0


def test_full_cache_evicts_the_least_recently_used_only() -> None:
    clock = Clock()
    cache = TokenCache(ttl=60, max_entries=3, timer=clock)
    for t in ("a", "b", "c"):
        cache.put(t, principal(clock.now + 900, t))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", principal(clock.now + 900, "d"))
    assert cache.get("b") is None  # the least recently used went
    assert [cache.get(t) is not None for t in ("a", "c", "d")] == [True, True, True]


def test_ttl_zero_disables_the_cache() -> None:
    cache = TokenCache(ttl=0)
    cache.put("t", principal(4_000_000_000))
    assert cache.get("t") is None


class FakeAuth:
    """AuthService.ValidateToken, counting calls."""

    def __init__(self, expires_at: int) -> None:
        self.calls: list[str] = []
        self.expires_at = expires_at

    async def ValidateToken(self, request: auth_pb2.ValidateTokenRequest) -> auth_pb2.ValidateTokenResponse:
        self.calls.append(request.token)
        return auth_pb2.ValidateTokenResponse(
            user_id="u1",
            email="u1@example.test",
            name="U",
            roles=[auth_pb2.ROLE_OWNER],
            expires_at=Timestamp(seconds=self.expires_at),
        )


async def test_authenticator_asks_auth_once_per_token_while_cached() -> None:
    clock = Clock()
    auth = FakeAuth(expires_at=int(clock.now) + 900)
    authn = Authenticator(auth, TokenCache(ttl=5, timer=clock))  # type: ignore[arg-type]
    first = await authn.validate("tok")
    again = await authn.validate("tok")
    assert first == again and first.roles == frozenset({"OWNER"})
    assert auth.calls == ["tok"]
    clock.now += 6
    await authn.validate("tok")
    assert auth.calls == ["tok", "tok"]


class RevokingAuth(FakeAuth):
    """ValidateToken that refuses once the session is ended (as auth_svc does after a logout)."""

    revoked = False

    async def ValidateToken(self, request: auth_pb2.ValidateTokenRequest) -> auth_pb2.ValidateTokenResponse:
        if self.revoked:
            raise Unauthenticated("token was revoked", reason="TOKEN_REVOKED")
        response = await super().ValidateToken(request)
        response.session_id = "s1"
        return response


async def test_a_revoked_token_is_refused_once_the_cache_lets_go_of_it() -> None:
    """The bound docs/api.md states: an access token of an ended session works at most the cache's ttl."""
    clock = Clock()
    auth = RevokingAuth(expires_at=int(clock.now) + 900)
    authn = Authenticator(auth, TokenCache(ttl=5, timer=clock))  # type: ignore[arg-type]
    assert (await authn.validate("tok")).session_id == "s1"
    auth.revoked = True  # logout, log out everywhere, password change or reset
    clock.now += 4.9
    await authn.validate("tok")  # still cached: within the bound
    clock.now += 0.2
    with pytest.raises(Unauthenticated) as exc:
        await authn.validate("tok")
    assert exc.value.reason == "TOKEN_REVOKED"
