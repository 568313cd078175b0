"""Access tokens: Ed25519 (EdDSA) JWTs signed by the newest key of a ring and verified by any of its
keys (rotation), their claims, and the ring's public JWKS."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auth_svc.domain.accounts import CLINIC_ROLES, CLINIC_STAFF, User
from auth_svc.domain.errors import TokenExpired, TokenInvalid

ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class Claims:
    user_id: str
    email: str
    name: str
    roles: tuple[str, ...]
    memberships: dict[str, str]
    session_id: str
    token_id: str
    expires_at: datetime
    locale: str = ""  # the user's BCP 47 language tag when the token was issued ("" when unknown)

    @property
    def clinic_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.memberships))


def _memberships(raw: object) -> dict[str, str]:
    """The ``clinics`` claim: {clinic id: role}; tokens issued before clinic roles carried a list (staff)."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items() if v in CLINIC_ROLES}
    if isinstance(raw, list):
        return {str(c): CLINIC_STAFF for c in raw}
    return {}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class VerificationKey:
    """One Ed25519 key of the ring: its JWK ``kid`` (derived from the public key) and public part."""

    kid: str
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    x: str

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> VerificationKey:
        public = private.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(hashlib.sha256(raw).hexdigest()[:16], private, public, _b64url(raw))

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig", "alg": ALGORITHM, "x": self.x}


class KeyRing:
    """The active signing keys, oldest first: the newest signs, every one verifies its own tokens
    (found by the token's ``kid``), so tokens signed before a rotation stay valid until they expire
    or their key is retired."""

    def __init__(self, keys: Sequence[Ed25519PrivateKey]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self.keys = [VerificationKey.of(k) for k in keys]
        self.by_kid = {k.kid: k for k in self.keys}

    @property
    def signing(self) -> VerificationKey:
        return self.keys[-1]

    def jwks(self) -> list[dict[str, str]]:
        return [k.jwk() for k in self.keys]


class TokenIssuer:
    """Signs and verifies Ed25519 (EdDSA) JWT access tokens.  Only EdDSA is accepted on verify, so
    ``alg: none`` and algorithm-confusion tokens are rejected.

    ``keys`` is one key or the ring (oldest first; the newest signs).  With ``load`` (the key store:
    e.g. a directory every replica mounts), :meth:`reload` picks up rotated keys, and a token whose
    ``kid`` is unknown triggers one reload (at most every ``reload_after`` seconds) before it is
    rejected: another replica may have started signing with a key this one has not loaded yet."""

    def __init__(
        self,
        keys: Ed25519PrivateKey | Sequence[Ed25519PrivateKey],
        *,
        issuer: str,
        audience: str,
        ttl: timedelta,
        load: Callable[[], Sequence[Ed25519PrivateKey]] | None = None,
        reload_after: float = 1.0,
    ) -> None:
        self.ring = KeyRing([keys] if isinstance(keys, Ed25519PrivateKey) else list(keys))
        self.load = load
        self.reload_after = reload_after
        self._reloaded = time.monotonic()
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    @property
    def kid(self) -> str:
        """``kid`` of the key that signs new tokens."""
        return self.ring.signing.kid

    @property
    def x(self) -> str:
        """Public key (JWK ``x``) of the key that signs new tokens."""
        return self.ring.signing.x

    def reload(self) -> KeyRing:
        """Read the key store again (a no-op without ``load``); an empty store keeps the old ring."""
        self._reloaded = time.monotonic()
        if self.load is not None:
            keys = list(self.load())
            if keys:
                self.ring = KeyRing(keys)
        return self.ring

    def _verification_key(self, token: str) -> VerificationKey:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise TokenInvalid("invalid token") from exc
        if not isinstance(kid, str):
            raise TokenInvalid("invalid token: no key id")
        key = self.ring.by_kid.get(kid)
        if key is None and self.load is not None and time.monotonic() - self._reloaded >= self.reload_after:
            key = self.reload().by_kid.get(kid)
        if key is None:  # never issued here, or its key was retired
            raise TokenInvalid("invalid token: unknown or retired signing key")
        return key

    def issue(self, user: User, session_id: uuid.UUID, now: datetime) -> tuple[str, datetime]:
        exp = now + self.ttl
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user.id),
            "email": user.email,
            "name": user.name,
            "locale": user.locale,
            "roles": list(user.roles),
            "clinics": dict(user.memberships),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int(exp.timestamp()),
        }
        key = self.ring.signing
        return jwt.encode(payload, key.private, algorithm=ALGORITHM, headers={"kid": key.kid}), exp

    def verify(self, token: str, now: datetime) -> Claims:
        key = self._verification_key(token)
        try:
            data = jwt.decode(
                token,
                key.public,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "sub", "sid", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid("invalid token") from exc
        exp = datetime.fromtimestamp(int(data["exp"]), UTC)
        if exp <= now:
            raise TokenExpired("token expired")
        return Claims(
            user_id=data["sub"],
            email=data.get("email", ""),
            name=data.get("name", ""),
            roles=tuple(data.get("roles", ())),
            memberships=_memberships(data.get("clinics")),
            session_id=data["sid"],
            token_id=data["jti"],
            expires_at=exp,
            locale=str(data.get("locale", "")),
        )

    def jwks(self) -> list[dict[str, str]]:
        """Every active key as a public JWK (RFC 7517), oldest first."""
        return self.ring.jwks()

    def jwk(self) -> dict[str, str]:
        return self.ring.signing.jwk()
