"""The AuthRepository port's behaviour, once: run against the in-memory fake (tests/unit) and the
PostgreSQL adapter (tests/integration).  Subclasses provide the ``uow`` fixture (a transaction per
block).  Every test makes its own ids and emails, so it shares a database with others."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from auth_svc.domain import (
    EMAIL_VERIFICATION,
    PASSWORD_RESET,
    Invitation,
    LinkToken,
    Session,
    User,
    hash_secret,
)
from auth_svc.ports import UnitOfWork

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)


def email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.test"


def user(**over: object) -> User:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "email": email(),
        "name": "Ana",
        "password_hash": "argon2-hash",
        "roles": ("OWNER",),
        "created_at": NOW,
    }
    fields.update(over)
    return User(**fields)  # type: ignore[arg-type]


def session(user_id: uuid.UUID, **over: object) -> Session:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "refresh_hash": hash_secret("first"),
        "refresh_expires_at": NOW + timedelta(days=30),
        "created_at": NOW,
    }
    fields.update(over)
    return Session(**fields)  # type: ignore[arg-type]


def invitation(clinic: uuid.UUID, to: str, **over: object) -> Invitation:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "clinic_id": clinic,
        "email": to,
        "role": "STAFF",
        "token_hash": hash_secret(uuid.uuid4().hex),
        "invited_by": uuid.uuid4(),
        "expires_at": NOW + timedelta(hours=72),
        "created_at": NOW,
    }
    fields.update(over)
    return Invitation(**fields)  # type: ignore[arg-type]


def link(user_id: uuid.UUID, purpose: str = PASSWORD_RESET, **over: object) -> LinkToken:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "purpose": purpose,
        "email": email(),
        "token_hash": hash_secret(uuid.uuid4().hex),
        "expires_at": NOW + timedelta(minutes=30),
        "created_at": NOW,
    }
    fields.update(over)
    return LinkToken(**fields)  # type: ignore[arg-type]


class AuthRepositoryContract:
    """``uow`` is a fixture of the subclass."""

    # -- users ----------------------------------------------------------------------------------------
    async def test_emails_are_unique(self, uow: UnitOfWork) -> None:
        clinic = uuid.uuid4()
        ana = user(memberships={str(clinic): "ADMIN"})
        async with uow() as repo:
            assert await repo.add_user(ana)
            assert not await repo.add_user(user(email=ana.email))  # another id, the same email
        async with uow() as repo:
            by_email, by_id = await repo.user_by_email(ana.email), await repo.user_by_id(ana.id)
        assert by_email == by_id == ana  # memberships included
        async with uow() as repo:
            assert await repo.user_by_email(email()) is None
            assert await repo.user_by_id(uuid.uuid4()) is None

    async def test_upsert_creates_then_updates_by_email_keeping_the_id(self, uow: UnitOfWork) -> None:
        first, second = uuid.uuid4(), uuid.uuid4()
        created = user(memberships={str(first): "STAFF"})
        async with uow() as repo:
            assert await repo.upsert_user(created) == created
        changed = user(
            email=created.email,
            name="Ana B",
            password_hash="new-hash",
            roles=("CLINIC_STAFF",),
            memberships={str(second): "ADMIN"},
        )
        async with uow() as repo:
            stored = await repo.upsert_user(changed)
        assert (stored.id, stored.created_at) == (created.id, created.created_at)
        assert (stored.name, stored.password_hash, stored.roles) == ("Ana B", "new-hash", ("CLINIC_STAFF",))
        # memberships are added (or their role changed), never taken away by an upsert
        assert stored.memberships == {str(first): "STAFF", str(second): "ADMIN"}
        async with uow() as repo:
            assert await repo.user_by_id(created.id) == stored

    async def test_password_hash_and_roles_change(self, uow: UnitOfWork) -> None:
        ana = user()
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.set_password_hash(ana.id, "rehashed")
            await repo.set_roles(ana.id, ("OWNER", "CLINIC_STAFF"))
        async with uow() as repo:
            found = await repo.user_by_id(ana.id)
        assert found is not None and (found.password_hash, found.roles) == (
            "rehashed",
            ("OWNER", "CLINIC_STAFF"),
        )

    async def test_a_failed_unit_of_work_leaves_nothing(self, uow: UnitOfWork) -> None:
        ana = user()
        try:
            async with uow() as repo:
                await repo.add_user(ana)
                raise RuntimeError("the use case failed after the insert")
        except RuntimeError:
            pass
        async with uow() as repo:
            assert await repo.user_by_id(ana.id) is None

    # -- sessions -------------------------------------------------------------------------------------
    async def test_sessions_rotate_and_revoke_once(self, uow: UnitOfWork) -> None:
        ana = user()
        s = session(ana.id)
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.add_session(s)
        async with uow() as repo:
            assert await repo.session_for_update(s.id) == s
            assert await repo.session_revoked_at(s.id) == (True, None)
            assert await repo.session_revoked_at(uuid.uuid4()) == (False, None)
            assert await repo.session_for_update(uuid.uuid4()) is None
            await repo.rotate_refresh(s.id, hash_secret("second"), NOW + timedelta(days=31))
        async with uow() as repo:
            rotated = await repo.session_for_update(s.id)
            assert rotated is not None
            assert (rotated.refresh_hash, rotated.refresh_expires_at) == (
                hash_secret("second"),
                NOW + timedelta(days=31),
            )
            await repo.revoke_session(s.id, NOW + timedelta(hours=1))
            await repo.revoke_session(s.id, NOW + timedelta(hours=2))  # the first revocation stands
            await repo.revoke_session(uuid.uuid4(), NOW)  # unknown: nothing
        async with uow() as repo:
            assert await repo.session_revoked_at(s.id) == (True, NOW + timedelta(hours=1))
            revoked = await repo.session_for_update(s.id)
        assert revoked is not None and revoked.revoked

    async def test_revoking_a_users_sessions_ends_only_theirs(self, uow: UnitOfWork) -> None:
        ana, bob = user(), user()
        a1, a2, b1 = session(ana.id), session(ana.id), session(bob.id)
        async with uow() as repo:
            for u in (ana, bob):
                await repo.add_user(u)
            for s in (a1, a2, b1):
                await repo.add_session(s)
            await repo.revoke_session(a1.id, NOW)
            await repo.revoke_user_sessions(ana.id, NOW + timedelta(hours=1))
        async with uow() as repo:
            assert await repo.session_revoked_at(a1.id) == (True, NOW)  # already revoked: kept
            assert await repo.session_revoked_at(a2.id) == (True, NOW + timedelta(hours=1))
            assert await repo.session_revoked_at(b1.id) == (True, None)

    async def test_revoking_a_users_sessions_can_keep_the_callers(self, uow: UnitOfWork) -> None:
        ana = user()
        mine, other = session(ana.id), session(ana.id)
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.add_session(mine)
            await repo.add_session(other)
            await repo.revoke_user_sessions(ana.id, NOW, keep=mine.id)
        async with uow() as repo:
            assert await repo.session_revoked_at(mine.id) == (True, None)
            assert await repo.session_revoked_at(other.id) == (True, NOW)

    # -- the owner's account --------------------------------------------------------------------------
    async def test_the_profile_and_the_verification_are_stored(self, uow: UnitOfWork) -> None:
        ana = user(email_verified_at=NOW, phone="+43123456789", locale="de-AT", time_zone="Europe/Vienna")
        bob = user()
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.add_user(bob)
        async with uow() as repo:
            assert await repo.user_by_id(ana.id) == ana
            found = await repo.user_by_id(bob.id)
        assert found is not None and (
            found.email_verified_at,
            found.phone,
            found.locale,
            found.time_zone,
        ) == (
            None,
            "",
            "",
            "",
        )

    async def test_save_profile_changes_only_the_profile(self, uow: UnitOfWork) -> None:
        ana = user(locale="en")
        async with uow() as repo:
            await repo.add_user(ana)
        changed = User(
            id=ana.id,
            email=email(),  # not a profile field: ignored
            name="Ana Maria",
            password_hash="other",
            roles=("PLATFORM_ADMIN",),
            created_at=NOW + timedelta(days=1),
            email_verified_at=NOW,
            phone="+4915112345678",
            locale="de-DE",
            time_zone="Europe/Berlin",
        )
        async with uow() as repo:
            await repo.save_profile(changed)
        async with uow() as repo:
            stored = await repo.user_by_id(ana.id)
        assert stored is not None
        assert (stored.name, stored.phone, stored.locale, stored.time_zone) == (
            "Ana Maria",
            "+4915112345678",
            "de-DE",
            "Europe/Berlin",
        )
        assert (
            stored.email,
            stored.password_hash,
            stored.roles,
            stored.created_at,
            stored.email_verified_at,
        ) == (
            ana.email,
            ana.password_hash,
            ana.roles,
            ana.created_at,
            None,
        )

    async def test_a_changed_email_is_unverified_and_a_taken_one_refused(self, uow: UnitOfWork) -> None:
        ana, bob = user(email_verified_at=NOW), user()
        new = email()
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.add_user(bob)
        async with uow() as repo:
            assert not await repo.change_email(ana.id, bob.email)
            assert await repo.change_email(ana.id, new)
            assert await repo.change_email(ana.id, new)  # its own email again: no conflict
        async with uow() as repo:
            by_new, by_old = await repo.user_by_email(new), await repo.user_by_email(ana.email)
        assert by_old is None
        assert by_new is not None and (by_new.id, by_new.email_verified_at) == (ana.id, None)

    async def test_an_email_is_verified_only_while_it_is_the_users(self, uow: UnitOfWork) -> None:
        ana = user()
        async with uow() as repo:
            await repo.add_user(ana)
        async with uow() as repo:
            assert not await repo.set_email_verified(ana.id, email(), NOW)  # another address
            assert not await repo.set_email_verified(uuid.uuid4(), ana.email, NOW)  # another user
        async with uow() as repo:
            found = await repo.user_by_id(ana.id)
            assert found is not None and found.email_verified_at is None
            assert await repo.set_email_verified(ana.id, ana.email, NOW)
        async with uow() as repo:
            found = await repo.user_by_id(ana.id)
        assert found is not None and found.email_verified_at == NOW

    async def test_a_new_link_replaces_the_unused_one_of_its_purpose(self, uow: UnitOfWork) -> None:
        ana, bob = user(), user()
        used, first, second = link(ana.id), link(ana.id), link(ana.id)
        verification, bobs = link(ana.id, EMAIL_VERIFICATION), link(bob.id)
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.add_user(bob)
            await repo.replace_link(used)
            await repo.mark_link_used(used.id, NOW + timedelta(minutes=1))
            await repo.replace_link(first)
            await repo.replace_link(verification)
            await repo.replace_link(bobs)
            await repo.replace_link(second)
        async with uow() as repo:
            assert await repo.link_for_update(first.token_hash) is None  # replaced
            assert await repo.link_for_update(second.token_hash) == second
            assert await repo.link_for_update(verification.token_hash) == verification  # another purpose
            assert await repo.link_for_update(bobs.token_hash) == bobs  # another account
            kept = await repo.link_for_update(used.token_hash)  # a used one stays, to say it was used
            assert kept is not None and kept.used_at == NOW + timedelta(minutes=1)
            assert await repo.link_for_update(hash_secret("never issued")) is None

    async def test_a_link_is_marked_used(self, uow: UnitOfWork) -> None:
        ana = user()
        lnk = link(ana.id, EMAIL_VERIFICATION, email=ana.email)
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.replace_link(lnk)
        async with uow() as repo:
            found = await repo.link_for_update(lnk.token_hash)
            assert found is not None and found.used_at is None
            await repo.mark_link_used(lnk.id, NOW + timedelta(minutes=3))
        async with uow() as repo:
            found = await repo.link_for_update(lnk.token_hash)
        assert found is not None and found.used_at == NOW + timedelta(minutes=3)

    # -- memberships ----------------------------------------------------------------------------------
    async def test_memberships_are_put_changed_and_removed(self, uow: UnitOfWork) -> None:
        clinic, other = uuid.uuid4(), uuid.uuid4()
        ana = user()
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.put_membership(ana.id, clinic, "STAFF")
            await repo.put_membership(ana.id, clinic, "ADMIN")  # a second put changes the role
            await repo.put_membership(ana.id, other, "STAFF")
        async with uow() as repo:
            assert await repo.memberships(ana.id) == {str(clinic): "ADMIN", str(other): "STAFF"}
            assert await repo.remove_membership(ana.id, other)
            assert not await repo.remove_membership(ana.id, other)
            assert not await repo.remove_membership(uuid.uuid4(), clinic)
        async with uow() as repo:
            assert await repo.memberships(ana.id) == {str(clinic): "ADMIN"}

    async def test_clinic_admins_are_people_not_service_accounts(self, uow: UnitOfWork) -> None:
        clinic = uuid.uuid4()
        boss = user(roles=("CLINIC_STAFF",), memberships={str(clinic): "ADMIN"})
        staff = user(roles=("CLINIC_STAFF",), memberships={str(clinic): "STAFF"})
        machine = user(roles=("SERVICE",), memberships={str(clinic): "ADMIN"})
        elsewhere = user(roles=("CLINIC_STAFF",), memberships={str(uuid.uuid4()): "ADMIN"})
        async with uow() as repo:
            for u in (boss, staff, machine, elsewhere):
                await repo.add_user(u)
        async with uow() as repo:
            assert await repo.clinic_admins(clinic) == [boss.id]
            assert await repo.clinic_admins(clinic, lock=True) == [boss.id]
            assert await repo.clinic_admins(uuid.uuid4()) == []

    async def test_members_page_by_email(self, uow: UnitOfWork) -> None:
        clinic = uuid.uuid4()
        tag = uuid.uuid4().hex[:8]
        people = [
            user(email=f"{c}-{tag}@example.test", roles=("CLINIC_STAFF",), memberships={str(clinic): "STAFF"})
            for c in "cab"
        ]
        machine = user(email=f"d-{tag}@example.test", roles=("SERVICE",), memberships={str(clinic): "ADMIN"})
        async with uow() as repo:
            for u in (*people, machine, user()):
                await repo.add_user(u)
        async with uow() as repo:
            page = await repo.list_members(clinic, None, 3)
            assert [m.email[0] for m in page] == ["a", "b", "c"]
            assert [(m.role, m.service_account) for m in page] == [("STAFF", False)] * 3
            rest = await repo.list_members(clinic, (page[-1].email, str(page[-1].user_id)), 3)
            assert [(m.user_id, m.role, m.service_account) for m in rest] == [(machine.id, "ADMIN", True)]
            assert await repo.list_members(uuid.uuid4(), None, 3) == []

    # -- invitations ----------------------------------------------------------------------------------
    async def test_a_new_invitation_replaces_the_pending_one(self, uow: UnitOfWork) -> None:
        clinic, to = uuid.uuid4(), email()
        first, second = invitation(clinic, to), invitation(clinic, to, role="ADMIN")
        elsewhere = invitation(uuid.uuid4(), to)
        async with uow() as repo:
            await repo.replace_invitation(first)
            await repo.replace_invitation(elsewhere)
            await repo.replace_invitation(second)
        async with uow() as repo:
            assert await repo.invitation_for_update(first.token_hash) is None  # its token stopped working
            assert await repo.invitation_for_update(second.token_hash) == second
            assert await repo.invitation_for_update(elsewhere.token_hash) == elsewhere  # another clinic's

    async def test_an_invitation_is_used_once_and_an_accepted_one_stays(self, uow: UnitOfWork) -> None:
        clinic, to = uuid.uuid4(), email()
        inv = invitation(clinic, to)
        async with uow() as repo:
            await repo.replace_invitation(inv)
        async with uow() as repo:
            found = await repo.invitation_for_update(inv.token_hash)
            assert found is not None and found.accepted_at is None
            await repo.mark_accepted(inv.id, NOW + timedelta(minutes=5))
        async with uow() as repo:
            used = await repo.invitation_for_update(inv.token_hash)
        assert used is not None and used.accepted_at == NOW + timedelta(minutes=5)
        async with uow() as repo:
            await repo.replace_invitation(invitation(clinic, to))  # a new one: the accepted one stays
            assert await repo.invitation_for_update(inv.token_hash) == used
        async with uow() as repo:
            assert await repo.invitation_for_update(hash_secret("never issued")) is None

    # -- account deletion and export --------------------------------------------------------------------
    async def test_an_erased_account_keeps_only_its_id_and_frees_its_email(self, uow: UnitOfWork) -> None:
        from auth_svc.domain.deletion import erased

        clinic = uuid.uuid4()
        ana = user(
            memberships={str(clinic): "STAFF"}, phone="+4912345678", locale="de", time_zone="Europe/Berlin"
        )
        old = link(ana.id, EMAIL_VERIFICATION)
        async with uow() as repo:
            await repo.add_user(ana)
            await repo.add_session(s := session(ana.id))
            await repo.replace_link(old)
        async with uow() as repo:
            assert await repo.account_emails(ana.id) == sorted({ana.email, old.email})
            locked = await repo.user_for_update(ana.id)
            assert locked == ana
            await repo.erase_user(erased(ana, NOW + timedelta(hours=1)))
        async with uow() as repo:
            gone = await repo.user_by_id(ana.id)
            assert gone is not None and gone.deleted_at == NOW + timedelta(hours=1)
            assert (gone.name, gone.phone, gone.locale, gone.time_zone, gone.memberships) == (
                "",
                "",
                "",
                "",
                {},
            )
            assert ana.email not in gone.email and await repo.user_by_email(ana.email) is None
            assert await repo.link_for_update(old.token_hash) is None
            [ended] = await repo.user_sessions(ana.id)
            assert (ended.id, ended.refresh_hash, ended.revoked_at) == (s.id, "", NOW + timedelta(hours=1))
            assert await repo.account_emails(ana.id) == [gone.email]
            assert await repo.add_user(user(email=ana.email))  # the address registers anew

    async def test_an_outbox_event_is_written_once_per_event_id(self, uow: UnitOfWork) -> None:
        event_id = uuid.uuid4()
        async with uow() as repo:
            await repo.add_outbox(event_id, "account.deleted", "k", "t", b"one")
            # a retry of the same event is no error (PostgreSQL: no unique violation) and adds nothing
            await repo.add_outbox(event_id, "account.deleted", "k", "t", b"two")
