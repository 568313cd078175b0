"""Clinic operations' use cases with fake units of work: the catalog cache never outlives a change, the
membership check guards every change, invitations are single use, staff removal ends sessions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_svc.domain import InvitationInvalid, LastClinicAdmin, Passwords, TokenIssuer, TokenRevoked, User
from auth_svc.handlers import AuthHandlers, ClinicStaffHandlers, ServiceAccountHandlers, principal_of
from booking_svc.domain import Clinic, EtagMismatch, Interval, Pet, Service
from booking_svc.handlers import ClinicProfile, ReserveCommand, WeeklyHours
from petpro.authn import ClinicAdminRequired, PlatformAdminRequired, Principal
from petpro.errors import InvalidArgument, NotFound
from tests.unit.fakes.auth import AuthStore, auth_uow
from tests.unit.fakes.booking import BookingStore, booking_use_cases

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)  # a Tuesday
TUESDAY = datetime(2030, 1, 8, tzinfo=UTC).date()


def who(roles: set[str], memberships: dict[str, str] | None = None) -> Principal:
    m = memberships or {}
    return Principal(
        str(uuid.uuid4()), "x@y.z", "X", frozenset(roles), frozenset(m), NOW.timestamp() + 900, m
    )


@pytest.fixture
def world():
    store = BookingStore()
    clinic = Clinic(uuid.uuid4(), "Vet", "Europe/Berlin", {"tue": [Interval(time(8), time(12))]})
    svc = Service(uuid.uuid4(), clinic.id, "Check-up", 30, 4500, "EUR")
    store.clinics[clinic.id], store.services[svc.id] = clinic, svc
    bookings = booking_use_cases(store, clock=lambda: NOW)
    admin = who({"CLINIC_STAFF"}, {str(clinic.id): "ADMIN"})
    return bookings, bookings.admin, store, clinic, svc, admin


async def test_a_committed_change_is_never_served_from_the_cache(world):
    bookings, h, _, clinic, svc, admin = world
    before = await bookings.catalog.availability(svc.id, TUESDAY.isoformat())
    assert len(before[2]) == 8
    await bookings.catalog.availability(svc.id, TUESDAY.isoformat())  # cached now
    await h.create_closure(admin, clinic.id, TUESDAY.isoformat(), TUESDAY.isoformat(), "Training")
    assert (await bookings.catalog.availability(svc.id, TUESDAY.isoformat()))[2] == []
    await h.update_service(admin, svc.id, Service(svc.id, clinic.id, "", 60, 0, ""), ["duration_minutes"], "")
    assert (await bookings.catalog.get_service(svc.id))[0].duration_minutes == 60


async def test_cache_is_used_while_nothing_changes(world):
    bookings, _, store, _, svc, _ = world
    await bookings.catalog.get_service(svc.id)
    store.services[svc.id].name = "changed behind the catalog's back"  # no version bump: not a real change
    assert (await bookings.catalog.get_service(svc.id))[0].name == "Check-up"


async def test_every_change_checks_membership_of_that_clinic(world):
    _, h, _, clinic, svc, _ = world
    other = who({"CLINIC_STAFF"}, {str(uuid.uuid4()): "ADMIN"})
    staff = who({"CLINIC_STAFF"}, {str(clinic.id): "STAFF"})
    day = TUESDAY.isoformat()
    changes = [
        lambda p: h.update_clinic(p, clinic.id, ClinicProfile(name="X"), ["name"], ""),
        lambda p: h.set_opening_hours(p, clinic.id, WeeklyHours(()), ""),
        lambda p: h.create_closure(p, clinic.id, day, day, ""),
        lambda p: h.set_day_override(p, clinic.id, day, []),
        lambda p: h.create_service(p, clinic.id, Service(uuid.uuid4(), clinic.id, "S", 30, 100, "EUR")),
        lambda p: h.archive_service(p, svc.id, ""),
    ]
    for change in changes:
        with pytest.raises(NotFound):  # the clinic (or its service) is not revealed
            await change(other)
        with pytest.raises(ClinicAdminRequired):
            await change(staff)
    with pytest.raises(PlatformAdminRequired):
        await h.create_clinic(staff, ClinicProfile(name="New", time_zone="UTC"), WeeklyHours(()))


async def test_update_service_with_a_stale_etag_changes_nothing(world):
    _, h, store, clinic, svc, admin = world
    etag = svc.etag
    await h.update_service(
        admin, svc.id, Service(svc.id, clinic.id, "", 0, 0, "", capacity=3), ["capacity"], etag
    )
    with pytest.raises(EtagMismatch):
        await h.update_service(admin, svc.id, Service(svc.id, clinic.id, "Renamed", 0, 0, ""), ["name"], etag)
    assert (store.services[svc.id].name, store.services[svc.id].capacity) == ("Check-up", 3)


async def test_update_validates_the_result_per_field(world):
    _, h, _, clinic, svc, admin = world
    with pytest.raises(InvalidArgument) as exc:
        await h.update_service(admin, svc.id, Service(svc.id, clinic.id, "", 0, -1, "EUR"), ["price"], "")
    assert exc.value.violations[0].field == "service.price.amount_minor"


async def test_closing_a_day_lists_its_bookings_and_keeps_them(world):
    bookings, h, store, clinic, svc, admin = world
    owner = uuid.uuid4()
    pet = Pet(uuid.uuid4(), owner, "Rex", "DOG")
    store.pets[pet.id] = pet
    slot = (await bookings.catalog.availability(svc.id, TUESDAY.isoformat()))[2][0].start
    res = await bookings.reservations.reserve(
        ReserveCommand("r1", owner, "o@x.co", "O", svc.id, pet.id, slot)
    )
    booked = await bookings.reservations.confirm(res.lock_id, uuid.uuid4())
    _closure, affected = await h.create_closure(
        admin, clinic.id, TUESDAY.isoformat(), TUESDAY.isoformat(), "Flood"
    )
    assert [b.id for b in affected] == [booked.id]
    assert store.bookings[booked.id].state == "CONFIRMED"
    _, _, affected = await h.set_day_override(admin, clinic.id, TUESDAY.isoformat(), [])
    assert [b.id for b in affected] == [booked.id]


async def test_species_restriction_on_reserve(world):
    bookings, _, store, _, svc, _ = world
    store.services[svc.id].species_allowed = ("CAT",)
    owner = uuid.uuid4()
    dog = Pet(uuid.uuid4(), owner, "Rex", "DOG")
    store.pets[dog.id] = dog
    slot = (await bookings.catalog.availability(svc.id, TUESDAY.isoformat()))[2][0].start
    with pytest.raises(Exception) as exc:
        await bookings.reservations.reserve(ReserveCommand("r1", owner, "o@x.co", "O", svc.id, dog.id, slot))
    assert getattr(exc.value, "reason", "") == "SPECIES_NOT_ALLOWED"


# -- staff -----------------------------------------------------------------------------------------
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def staff_env():
    store = AuthStore()
    issuer = TokenIssuer(
        Ed25519PrivateKey.generate(), issuer="petpro-auth", audience="petpro", ttl=timedelta(minutes=15)
    )
    auth = AuthHandlers(auth_uow(store), Passwords(FAST), issuer, clock=lambda: NOW, read=auth_uow(store))
    sent: list[tuple[str, str, str, str, datetime]] = []

    async def send(email: str, clinic_id: str, role: str, token: str, expires: datetime) -> None:
        sent.append((email, clinic_id, role, token, expires))

    return auth, ClinicStaffHandlers(auth, send, invitation_ttl=timedelta(hours=1)), store, sent


async def login_claims(auth: AuthHandlers, email: str, password: str) -> Principal:
    return principal_of(await auth.validate((await auth.login(email, password)).access_token))


async def test_invitation_accept_once_then_staff_removal_ends_the_session(staff_env):
    auth, h, store, sent = staff_env
    clinic = uuid.uuid4()
    boss = User(
        uuid.uuid4(),
        "boss@x.co",
        "Boss",
        Passwords(FAST).hash("boss-pass-1"),
        roles=("CLINIC_STAFF",),
        memberships={str(clinic): "ADMIN"},
    )
    store.users[boss.id] = boss
    boss_claims = await login_claims(auth, "boss@x.co", "boss-pass-1")
    await h.invite(boss_claims, clinic, "New@X.co", "STAFF")
    [(email, _, role, token, _)] = sent
    assert (email, role) == ("new@x.co", "STAFF")
    user = await h.accept(token, "new-pass-1", "Newbie")
    assert user.memberships == {str(clinic): "STAFF"} and user.roles == ("CLINIC_STAFF",)
    with pytest.raises(InvitationInvalid):
        await h.accept(token, "new-pass-1", "Newbie")
    new = await auth.login("new@x.co", "new-pass-1")
    await h.remove_staff(boss_claims, clinic, user.id)
    with pytest.raises(TokenRevoked):
        await auth.validate(new.access_token)
    with pytest.raises(LastClinicAdmin):
        await h.remove_staff(boss_claims, clinic, boss.id)


async def test_expired_or_replaced_invitations_do_not_work(staff_env):
    auth, h, store, sent = staff_env
    root = User(
        uuid.uuid4(), "root@x.co", "Root", Passwords(FAST).hash("root-pass-1"), roles=("PLATFORM_ADMIN",)
    )
    store.users[root.id] = root
    claims = await login_claims(auth, "root@x.co", "root-pass-1")
    clinic = uuid.uuid4()
    await h.invite(claims, clinic, "a@x.co", "ADMIN")
    await h.invite(claims, clinic, "a@x.co", "ADMIN")  # replaces the first
    (_, _, _, first, _), (_, _, _, second, _) = sent
    with pytest.raises(InvitationInvalid):
        await h.accept(first, "a-pass-12", "A")
    h.clock = lambda: NOW + timedelta(hours=2)
    with pytest.raises(InvitationInvalid):
        await h.accept(second, "a-pass-12", "A")


async def test_service_account_secret_is_hashed_and_rotation_revokes(staff_env):
    auth, _, store, _ = staff_env
    h = ServiceAccountHandlers(auth)
    clinic = uuid.uuid4()
    boss = User(
        uuid.uuid4(),
        "boss@x.co",
        "Boss",
        Passwords(FAST).hash("boss-pass-1"),
        roles=("CLINIC_STAFF",),
        memberships={str(clinic): "ADMIN"},
    )
    store.users[boss.id] = boss
    claims = await login_claims(auth, "boss@x.co", "boss-pass-1")
    creds = await h.create_service_account(claims, clinic, "PMS", "STAFF")
    assert creds.secret not in store.users[creds.client_id].password_hash
    pair = await h.issue_service_token(creds.client_id, creds.secret)
    sa = await auth.validate(pair.access_token)
    assert (sa.roles, sa.memberships) == (("SERVICE",), {str(clinic): "STAFF"})
    new_secret = await h.rotate_secret(claims, clinic, creds.client_id)
    with pytest.raises(TokenRevoked):
        await auth.validate(pair.access_token)
    with pytest.raises(Exception) as exc:
        await h.issue_service_token(creds.client_id, creds.secret)
    assert getattr(exc.value, "reason", "") == "INVALID_CREDENTIALS"
    assert (await h.issue_service_token(creds.client_id, new_secret)).access_token
    with pytest.raises(Exception) as exc:
        await auth.login(store.users[creds.client_id].email, new_secret)  # no password login for machines
    assert getattr(exc.value, "reason", "") == "INVALID_CREDENTIALS"


async def test_create_retried_with_its_request_id_returns_the_first_result(world):
    _, h, store, clinic, _, admin = world
    key = uuid.uuid4()
    draft = Service(uuid.uuid4(), clinic.id, "Vaccination", 15, 3000, "EUR")
    first = await h.create_service(admin, clinic.id, draft, key)
    again = await h.create_service(admin, clinic.id, draft, key)
    assert again.id == first.id and len(store.services) == 2  # the fixture's + one
    root = who({"PLATFORM_ADMIN"})
    c1 = await h.create_clinic(
        root, ClinicProfile(name="New", time_zone="UTC"), WeeklyHours(()), key_c := uuid.uuid4()
    )
    c2 = await h.create_clinic(root, ClinicProfile(name="New", time_zone="UTC"), WeeklyHours(()), key_c)
    assert c1.id == c2.id and len(store.clinics) == 2
