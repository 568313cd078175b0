"""AccountDeletion with the fakes of test_account_handlers: the password is needed (wrong: refused and
throttled), only an owner deletes itself, the account is erased in one transaction with its
AccountDeleted event (no address in it, the digests of every address the account had), sessions end,
the email registers anew, a second call answers OK and writes nothing; the export holds no secret."""

from __future__ import annotations

import hashlib

import pytest

from auth_svc.domain import InvalidCredentials, TokenRevoked, WrongPassword
from auth_svc.handlers import AccountDeletion, AccountHasRoles
from petpro.erasure import decode_account_deleted, encode_account_deleted
from tests.unit.test_account_handlers import GOOD, NOW, Env, env  # noqa: F401


def deletion(env: Env) -> AccountDeletion:  # noqa: F811
    return AccountDeletion(env.account, encode_account_deleted)


async def test_delete_erases_ends_sessions_publishes_once_and_frees_the_email(env: Env) -> None:  # noqa: F811
    owner = await env.owner()
    await env.account.change_email(owner, GOOD, "ana@example.org")  # two addresses over its life
    session = await env.auth.login("ana@example.org", GOOD)
    d = deletion(env)
    with pytest.raises(WrongPassword):
        await d.delete_account(owner, "not the password", "10.0.0.1")
    assert env.store.outbox == {} and env.store.users[owner].deleted_at is None

    await d.delete_account(owner, GOOD, "10.0.0.1")
    user = env.store.users[owner]
    assert (user.name, user.phone, user.deleted_at, user.roles) == ("", "", NOW, ())
    assert "example" not in user.email
    [(event_id, (topic, key, _, payload))] = env.store.outbox.items()
    assert (topic, key) == ("account.deleted", str(owner))
    event = decode_account_deleted(event_id, payload)
    assert b"ana@" not in payload and event.user_id == owner and event.deleted_at == NOW
    # the addresses auth still knows (the old one's code was replaced by the new one's): payment also
    # finds the account's payments by its id, whatever address they were made with
    assert list(event.email_sha256) == [hashlib.sha256(b"ana@example.org").hexdigest()]
    with pytest.raises(TokenRevoked):
        await env.auth.validate(session.access_token)
    with pytest.raises(InvalidCredentials):
        await env.auth.login("ana@example.org", GOOD)

    await d.delete_account(owner, "anything at all now")  # idempotent: already deleted
    assert len(env.store.outbox) == 1
    again = await env.account.register("ana@example.org", GOOD, "Ana again")
    assert again.id != owner


async def test_staff_cannot_delete_themselves_and_the_export_has_no_secret(env: Env) -> None:  # noqa: F811
    owner = await env.owner()
    await env.auth.login("ana@example.test", GOOD)
    exported = await deletion(env).export_account(owner)
    assert exported["user"]["email"] == "ana@example.test" and len(exported["sessions"]) == 1
    assert "hash" not in str(exported) and env.store.users[owner].password_hash not in str(exported)
    env.store.users[owner].memberships["c1"] = "STAFF"
    with pytest.raises(AccountHasRoles):
        await deletion(env).delete_account(owner, GOOD)
    assert env.store.users[owner].deleted_at is None and env.store.outbox == {}
