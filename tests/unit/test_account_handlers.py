"""AccountHandlers with a fake unit of work, a recording mail and a recording throttle: password reset
(no enumeration, the same answer time, single use, expiry, another account's token, every session
ends), email verification and its resend, password and email changes, logout, log out everywhere,
the profile; and that one owner can do none of it to another."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.adapters.common_passwords import load_common_passwords
from auth_svc.domain import (
    EmailTaken,
    InvalidCredentials,
    LinkTokenInvalid,
    PasswordPolicy,
    Passwords,
    SessionNotFound,
    TokenIssuer,
    TokenRevoked,
    WrongPassword,
)
from auth_svc.handlers import AccountHandlers, AccountRules, AuthHandlers, EmailAlreadyVerified
from petpro.backoff import Rule
from petpro.errors import InvalidArgument
from tests.unit.fakes.auth import AuthStore, auth_uow

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
GOOD, BETTER = "correct horse battery", "staple cheese mountain"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Mail:
    """The AccountMail port, recording what would be sent."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, to, token or new address)

    def password_reset(self, to: str, name: str, token: str, expires_at: datetime) -> None:
        self.sent.append(("reset", to, token))

    def verify_email(self, to: str, name: str, token: str, expires_at: datetime) -> None:
        self.sent.append(("verify", to, token))

    def email_changed(self, old: str, new: str, name: str) -> None:
        self.sent.append(("changed", old, new))

    def owner_invitation(self, to: str, name: str, clinic_name: str, token: str, expires_at: object) -> None:
        self.sent.append(("invitation", to, token))

    def last(self, kind: str, to: str) -> str:
        return [t for k, a, t in self.sent if (k, a) == (kind, to)][-1]


@dataclass
class Throttle:
    """petpro.throttle's rule: a subject is locked once its failures pass the rule's free ones."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    async def check(self, *subjects: tuple[Rule, str]) -> None:
        from petpro.backoff import TooManyAttempts

        for rule, subject in subjects:
            if self.counts.get((rule.name, subject), 0) > rule.free:
                raise TooManyAttempts(1)

    async def failed(self, *subjects: tuple[Rule, str]) -> None:
        for rule, subject in subjects:
            self.counts[(rule.name, subject)] = self.counts.get((rule.name, subject), 0) + 1

    async def succeeded(self, *subjects: tuple[Rule, str]) -> None:
        for rule, subject in subjects:
            self.counts.pop((rule.name, subject), None)


class Timer:
    """A monotonic clock that each repository step moves on, and the sleeps the handler asks for."""

    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@dataclass
class Env:
    auth: AuthHandlers
    account: AccountHandlers
    store: AuthStore
    clock: Clock
    mail: Mail
    throttle: Throttle
    timer: Timer

    async def owner(self, email: str = "ana@example.test") -> uuid.UUID:
        user = await self.account.register(email, GOOD, "Ana")
        return user.id


@pytest.fixture
def env() -> Env:
    store, clock, mail, throttle, timer = AuthStore(), Clock(), Mail(), Throttle(), Timer()
    issuer = TokenIssuer(
        Ed25519PrivateKey.generate(), issuer="petpro-auth", audience="petpro", ttl=timedelta(minutes=15)
    )
    auth = AuthHandlers(
        auth_uow(store),
        Passwords(FAST),
        issuer,
        clock=clock,
        read=auth_uow(store),
        throttle=throttle,
        policy=PasswordPolicy(load_common_passwords()),
    )
    account = AccountHandlers(
        auth, mail, rules=AccountRules(), answer_floor=0.25, monotonic=timer, sleep=timer.sleep
    )
    return Env(auth, account, store, clock, mail, throttle, timer)


# -- registration ------------------------------------------------------------------------------------
async def test_registration_mails_a_verification_and_takes_the_locale_from_accept_language(env: Env) -> None:
    user = await env.account.register(
        "Ana@Example.test", GOOD, "Ana", accept_language="de-AT,de;q=0.9", time_zone="Europe/Vienna"
    )
    assert (user.locale, user.time_zone, user.email_verified) == ("de-AT", "Europe/Vienna", False)
    [(kind, to, token)] = env.mail.sent
    assert (kind, to) == ("verify", "ana@example.test")
    assert token not in str(env.store.links)  # only its hash is stored
    given = await env.account.register("bob@example.test", GOOD, "Bob", locale="fr-ch", accept_language="de")
    assert given.locale == "fr-CH"


async def test_registration_refuses_a_weak_password_and_a_bad_profile(env: Env) -> None:
    with pytest.raises(InvalidArgument) as exc:
        await env.account.register("ana@example.test", "iloveyou", "Ana")
    assert exc.value.violations[0].reason == "PASSWORD_TOO_COMMON"
    with pytest.raises(InvalidArgument) as exc:
        await env.account.register("ana@example.test", GOOD, "Ana", locale="x_y", time_zone="Nowhere")
    assert [v.field for v in exc.value.violations] == ["locale", "time_zone"]
    assert env.store.users == {} and env.mail.sent == []


# -- password reset ----------------------------------------------------------------------------------
async def test_reset_answers_the_same_after_the_same_time_known_or_not(env: Env) -> None:
    await env.owner()
    for email in ("ana@example.test", "nobody@example.test"):
        env.timer.slept.clear()
        assert await env.account.request_password_reset(email, "10.0.0.1") is None
        # the fakes take no time: each answer waits out the whole floor
        assert env.timer.slept == [0.25]
    assert [(k, to) for k, to, _ in env.mail.sent if k == "reset"] == [("reset", "ana@example.test")]


async def test_reset_counts_per_email_and_per_address_known_or_not(env: Env) -> None:
    from petpro.backoff import TooManyAttempts

    await env.owner()
    for email in ("ana@example.test", "nobody@example.test"):
        for _ in range(3):
            await env.account.request_password_reset(email, f"10.0.0.{len(email)}")
        with pytest.raises(TooManyAttempts):  # the same refusal for an unknown email: nothing revealed
            await env.account.request_password_reset(email, "10.9.9.9")
    for i in range(10):
        await env.account.request_password_reset(f"x{i}@example.test", "10.1.1.1")
    with pytest.raises(TooManyAttempts):
        await env.account.request_password_reset("y@example.test", "10.1.1.1")


async def test_reset_sets_the_password_once_and_ends_every_session(env: Env) -> None:
    await env.owner()
    phone = await env.auth.login("ana@example.test", GOOD)
    laptop = await env.auth.login("ana@example.test", GOOD)
    await env.account.request_password_reset("ana@example.test")
    token = env.mail.last("reset", "ana@example.test")
    await env.account.reset_password("ANA@example.test", token, BETTER, "10.0.0.1")
    for pair in (phone, laptop):
        with pytest.raises(TokenRevoked):
            await env.auth.validate(pair.access_token)
        with pytest.raises(TokenRevoked):
            await env.auth.refresh(pair.refresh_token)
    assert (await env.auth.login("ana@example.test", BETTER)).user.email_verified  # the mail reached it
    with pytest.raises(LinkTokenInvalid) as exc:
        await env.account.reset_password("ana@example.test", token, "yet another secret", "10.0.0.1")
    assert exc.value.reason == "LINK_TOKEN_USED"


async def test_reset_refuses_an_old_a_replaced_and_another_accounts_token(env: Env) -> None:
    await env.owner()
    await env.owner("bob@example.test")
    await env.account.request_password_reset("ana@example.test")
    first = env.mail.last("reset", "ana@example.test")
    await env.account.request_password_reset("ana@example.test")
    second = env.mail.last("reset", "ana@example.test")
    await env.account.request_password_reset("bob@example.test")
    bobs = env.mail.last("reset", "bob@example.test")
    refusals = [
        ("ana@example.test", first, "LINK_TOKEN_UNKNOWN"),  # replaced by the newer one
        ("ana@example.test", "x" * 43, "LINK_TOKEN_UNKNOWN"),
        ("ana@example.test", bobs, "LINK_TOKEN_OTHER_ACCOUNT"),
        ("bob@example.test", second, "LINK_TOKEN_OTHER_ACCOUNT"),
    ]
    for email, token, reason in refusals:
        with pytest.raises(LinkTokenInvalid) as exc:
            await env.account.reset_password(email, token, BETTER)
        assert exc.value.reason == reason, (email, reason)
    env.clock.now += timedelta(minutes=30)
    with pytest.raises(LinkTokenInvalid) as exc:
        await env.account.reset_password("ana@example.test", second, BETTER)
    assert exc.value.reason == "LINK_TOKEN_EXPIRED"
    # nothing of that changed a password
    await env.auth.login("ana@example.test", GOOD)
    await env.auth.login("bob@example.test", GOOD)


async def test_reset_refuses_a_weak_password_without_using_the_token(env: Env) -> None:
    await env.owner()
    await env.account.request_password_reset("ana@example.test")
    token = env.mail.last("reset", "ana@example.test")
    with pytest.raises(InvalidArgument) as exc:
        await env.account.reset_password("ana@example.test", token, "password1")
    assert (exc.value.violations[0].field, exc.value.violations[0].reason) == (
        "new_password",
        "PASSWORD_TOO_COMMON",
    )
    await env.account.reset_password("ana@example.test", token, BETTER)


async def test_failed_redemptions_are_throttled_per_address(env: Env) -> None:
    from petpro.backoff import TooManyAttempts

    await env.owner()
    for _ in range(11):  # 10 free, the 11th locks
        with pytest.raises(LinkTokenInvalid):
            await env.account.reset_password("ana@example.test", "y" * 43, BETTER, "10.6.6.6")
    with pytest.raises(TooManyAttempts):
        await env.account.verify_email("z" * 43, "10.6.6.6")
    await env.account.request_password_reset("ana@example.test")
    await env.account.reset_password(
        "ana@example.test", env.mail.last("reset", "ana@example.test"), BETTER, "10.7.7.7"
    )


# -- verification --------------------------------------------------------------------------------------
async def test_verification_link_verifies_once(env: Env) -> None:
    uid = await env.owner()
    token = env.mail.last("verify", "ana@example.test")
    user = await env.account.verify_email(token)
    assert user.email_verified and (await env.account.get_user(uid)).email_verified
    with pytest.raises(LinkTokenInvalid) as exc:
        await env.account.verify_email(token)
    assert exc.value.reason == "LINK_TOKEN_USED"
    with pytest.raises(EmailAlreadyVerified):
        await env.account.resend_verification(uid)


async def test_resend_replaces_the_link_and_is_throttled(env: Env) -> None:
    from petpro.backoff import TooManyAttempts

    uid = await env.owner()
    first = env.mail.last("verify", "ana@example.test")
    for _ in range(3):
        await env.account.resend_verification(uid)
    with pytest.raises(TooManyAttempts):
        await env.account.resend_verification(uid)
    with pytest.raises(LinkTokenInvalid) as exc:
        await env.account.verify_email(first)
    assert exc.value.reason == "LINK_TOKEN_UNKNOWN"
    await env.account.verify_email(env.mail.last("verify", "ana@example.test"))


# -- signed-in changes -----------------------------------------------------------------------------------
async def test_change_password_needs_the_current_one_and_ends_the_other_sessions(env: Env) -> None:
    uid = await env.owner()
    here = await env.auth.login("ana@example.test", GOOD)
    there = await env.auth.login("ana@example.test", GOOD)
    here_sid = uuid.UUID((await env.auth.validate(here.access_token)).session_id)
    with pytest.raises(WrongPassword):
        await env.account.change_password(uid, here_sid, "not it at all", BETTER)
    with pytest.raises(InvalidArgument) as exc:
        await env.account.change_password(uid, here_sid, GOOD, "qwertyuiop")
    assert exc.value.violations[0].reason == "PASSWORD_TOO_COMMON"
    with pytest.raises(InvalidArgument) as exc:
        await env.account.change_password(uid, here_sid, GOOD, GOOD)
    assert exc.value.violations[0].reason == "PASSWORD_UNCHANGED"
    await env.account.change_password(uid, here_sid, GOOD, BETTER)
    await env.auth.validate(here.access_token)  # this session stays
    with pytest.raises(TokenRevoked):
        await env.auth.validate(there.access_token)
    await env.auth.login("ana@example.test", BETTER)


async def test_wrong_current_passwords_are_throttled_per_account_and_address(env: Env) -> None:
    from petpro.backoff import TooManyAttempts

    uid = await env.owner()
    for _ in range(6):  # 5 free, the 6th locks
        with pytest.raises(WrongPassword):
            await env.account.change_email(uid, "guess-guess", "new@example.test", "10.0.0.9")
    with pytest.raises(TooManyAttempts):
        await env.account.change_password(uid, None, GOOD, BETTER, "10.0.0.9")
    await env.account.change_password(uid, None, GOOD, BETTER, "10.0.0.10")  # the owner elsewhere


async def test_change_email_needs_the_password_verifies_again_and_tells_the_old_address(env: Env) -> None:
    uid = await env.owner()
    await env.owner("bob@example.test")
    await env.account.verify_email(env.mail.last("verify", "ana@example.test"))
    old_link = env.mail.sent[-1]
    with pytest.raises(EmailTaken):
        await env.account.change_email(uid, GOOD, "Bob@example.test")
    with pytest.raises(InvalidArgument):
        await env.account.change_email(uid, GOOD, "ana@example.test")
    user = await env.account.change_email(uid, GOOD, "ana.new@example.test")
    assert (user.email, user.email_verified) == ("ana.new@example.test", False)
    assert ("changed", "ana@example.test", "ana.new@example.test") in env.mail.sent
    assert old_link in env.mail.sent
    await env.account.verify_email(env.mail.last("verify", "ana.new@example.test"))
    assert (await env.account.get_user(uid)).email_verified
    await env.auth.login("ana.new@example.test", GOOD)


async def test_a_verification_link_of_the_old_address_is_refused(env: Env) -> None:
    uid = await env.owner()
    old = env.mail.last("verify", "ana@example.test")
    await env.account.change_email(uid, GOOD, "ana.new@example.test")
    with pytest.raises(LinkTokenInvalid) as exc:
        await env.account.verify_email(old)
    assert exc.value.reason == "LINK_TOKEN_UNKNOWN"  # replaced by the new address's link


async def test_logout_ends_one_session_and_logout_everywhere_all(env: Env) -> None:
    uid = await env.owner()
    phone = await env.auth.login("ana@example.test", GOOD)
    laptop = await env.auth.login("ana@example.test", GOOD)
    await env.account.logout(uid, phone.refresh_token)
    await env.account.logout(uid, phone.refresh_token)  # idempotent
    with pytest.raises(TokenRevoked):
        await env.auth.validate(phone.access_token)
    await env.auth.validate(laptop.access_token)
    for bad in ("garbage", f"{uuid.uuid4()}.secret", laptop.refresh_token + "x"):
        with pytest.raises(SessionNotFound):
            await env.account.logout(uid, bad)
    await env.account.logout_everywhere(uid)
    with pytest.raises(TokenRevoked):
        await env.auth.validate(laptop.access_token)


async def test_another_owner_can_do_none_of_it(env: Env) -> None:
    ana = await env.owner()
    bob = await env.owner("bob@example.test")
    anas = await env.auth.login("ana@example.test", GOOD)
    with pytest.raises(SessionNotFound):
        await env.account.logout(bob, anas.refresh_token)  # Bob holding Ana's refresh token
    await env.account.logout_everywhere(bob)
    await env.account.update_profile(bob, ["name"], {"name": "Bobby"})
    with pytest.raises(WrongPassword):  # Ana's password does not open Bob's account
        await env.account.change_password(bob, None, "not bobs password", BETTER)
    await env.auth.validate(anas.access_token)
    assert (await env.account.get_user(ana)).name == "Ana"
    # Bob's verification token does not verify Ana
    await env.account.verify_email(env.mail.last("verify", "bob@example.test"))
    assert not (await env.account.get_user(ana)).email_verified


async def test_profile_update_with_a_mask_and_field_violations(env: Env) -> None:
    uid = await env.owner()
    user = await env.account.update_profile(
        uid,
        ["phone", "locale", "time_zone"],
        {"phone": "+43664123456", "locale": "de-at", "time_zone": "Europe/Vienna"},
    )
    assert (user.phone, user.locale, user.time_zone, user.name) == (
        "+43664123456",
        "de-AT",
        "Europe/Vienna",
        "Ana",
    )
    with pytest.raises(InvalidArgument) as exc:
        await env.account.update_profile(uid, [], {"phone": "0664", "time_zone": "Europe/Atlantis"})
    assert [v.field for v in exc.value.violations] == ["user.phone", "user.time_zone"]
    stored = await env.account.get_user(uid)
    assert (stored.phone, stored.time_zone) == ("+43664123456", "Europe/Vienna")  # nothing half-applied
    cleared = await env.account.update_profile(uid, ["phone"], {})
    assert cleared.phone == ""


def test_tokens_in_mails_are_url_safe_and_long() -> None:
    from auth_svc.domain import new_link_token

    token = new_link_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)


async def test_invited_owner_claims_the_account_with_the_mailed_token_once(env: Env) -> None:
    user, invited = await env.account.invite_owner(" Cleo@Example.test ", "Cleo", clinic_name="Happy Paws")
    assert invited and user.email == "cleo@example.test" and not user.email_verified
    with pytest.raises(InvalidCredentials):  # no password works before the claim, not even an empty one
        await env.auth.login("cleo@example.test", "")
    token = env.mail.last("invitation", "cleo@example.test")
    # the same email again: the same account, no second invitation
    again, invited_again = await env.account.invite_owner("cleo@example.test", "")
    assert (again.id, invited_again) == (user.id, False)
    assert [k for k, to, _ in env.mail.sent if to == "cleo@example.test"] == ["invitation"]
    await env.account.reset_password("cleo@example.test", token, BETTER, "10.0.0.1")
    assert (await env.auth.login("cleo@example.test", BETTER)).user.email_verified
    with pytest.raises(LinkTokenInvalid) as exc:
        await env.account.reset_password("cleo@example.test", token, "yet another secret", "10.0.0.1")
    assert exc.value.reason == "LINK_TOKEN_USED"


async def test_invite_owner_finds_a_registered_owner_and_needs_a_name_for_a_new_one(env: Env) -> None:
    owner = await env.owner()
    found, invited = await env.account.invite_owner("ana@example.test", "Someone Else")
    assert (found.id, found.name, invited) == (owner, "Ana", False)
    with pytest.raises(InvalidArgument) as exc:
        await env.account.invite_owner("new@example.test", "  ")
    assert [v.field for v in exc.value.violations] == ["name"]
    with pytest.raises(InvalidArgument) as exc:
        await env.account.invite_owner("new@example.test", "New", phone="12")
    assert [v.field for v in exc.value.violations] == ["phone"]
    assert all(u.email != "new@example.test" for u in env.store.users.values())  # nothing half-made
