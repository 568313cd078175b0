"""Scheduling by providers, resources and pets (issue 20, docs/design/scheduling.md), on the fake
repository: the admin rules, holds claiming a provider, items and the pet (chosen or "any"), the day and
month views, and a property test tying availability to holds."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booking_svc.domain import (
    WEEKDAYS,
    Clinic,
    HasUpcomingBookings,
    Interval,
    Pet,
    PetBusy,
    ProviderTaken,
    ProviderUnavailable,
    ResourceTaken,
    Service,
    ServiceNeed,
    SlotUnavailable,
)
from booking_svc.handlers import ReserveCommand, WeeklyHours
from petpro.authn import Principal
from petpro.errors import DomainError, InvalidArgument
from tests.unit.fakes.booking import BookingStore, BookingUseCases, booking_use_cases

NOW = datetime(2030, 1, 1, 7, tzinfo=UTC)  # a Tuesday
DAY = date(2030, 1, 8)  # the next Tuesday
OPEN = {d: [Interval(time(8), time(18))] for d in WEEKDAYS[:5]}


def at(hh: int, mm: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=UTC)


def admin_of(clinic: Clinic) -> Principal:
    m = {str(clinic.id): "ADMIN"}
    return Principal(str(uuid.uuid4()), "a@b.c", "A", frozenset({"CLINIC_STAFF"}), frozenset(m), 2e9, m)


def hours(*spans: tuple[str, int, int]) -> WeeklyHours:
    return WeeklyHours(
        tuple(
            (f"provider.weekly_hours[{i}]", d, Interval(time(a), time(b)))
            for i, (d, a, b) in enumerate(spans)
        )
    )


def every_weekday(a: int, b: int) -> WeeklyHours:
    return hours(*((d, a, b) for d in WEEKDAYS[:5]))


class World:
    def __init__(self, tz: str = "UTC") -> None:
        self.store = BookingStore()
        self.clinic = Clinic(uuid.uuid4(), "Happy Paws", tz, dict(OPEN))
        self.store.clinics[self.clinic.id] = self.clinic
        self.now = NOW
        self.h: BookingUseCases = booking_use_cases(self.store, clock=lambda: self.now)
        self.admin = admin_of(self.clinic)
        self.owner = uuid.uuid4()

    def service(self, name: str, minutes: int = 30, **kw: object) -> Service:
        svc = Service(uuid.uuid4(), self.clinic.id, name, minutes, 4500, "EUR", **kw)  # type: ignore[arg-type]
        self.store.services[svc.id] = svc
        self.store.catalog_version += 1
        return svc

    def pet(self, owner: uuid.UUID | None = None) -> Pet:
        p = Pet(uuid.uuid4(), owner or self.owner, "Rex", "DOG", created_at=NOW)
        self.store.pets[p.id] = p
        return p

    async def require(
        self, svc: Service, providers: list[uuid.UUID], needs: tuple[ServiceNeed, ...] = ()
    ) -> Service:
        changes = Service(svc.id, svc.clinic_id, "", 0, 0, "", provider_ids=tuple(providers), needs=needs)
        return await self.h.admin.update_service(self.admin, svc.id, changes, ["provider_ids", "needs"], "")

    async def reserve(
        self, svc: Service, pet: Pet, start: datetime, provider: uuid.UUID | None = None, key: str = ""
    ):  # type: ignore[no-untyped-def]
        cmd = ReserveCommand(
            key or uuid.uuid4().hex,
            pet.owner_user_id,
            "o@x.y",
            "O",
            svc.id,
            pet.id,
            start,
            provider_id=provider,
        )
        return await self.h.reservations.reserve(cmd)


@pytest.fixture
async def vets():
    """Two vets (Weber mornings, Okafor all day), one dental room, a check-up and a dental cleaning."""
    w = World()
    weber = await w.h.admin.create_provider(w.admin, w.clinic.id, "Dr Weber", None, every_weekday(8, 12))
    okafor = await w.h.admin.create_provider(w.admin, w.clinic.id, "Dr Okafor", None, every_weekday(8, 18))
    room = await w.h.admin.create_resource(w.admin, w.clinic.id, "Dental 1", "dental room", ())
    checkup = await w.require(w.service("Check-up"), [weber.id, okafor.id])
    dental = await w.require(
        w.service("Dental cleaning"), [weber.id, okafor.id], (ServiceNeed("dental room"),)
    )
    return w, weber, okafor, room, checkup, dental


async def test_a_vet_is_sold_once_across_services(vets) -> None:
    w, weber, _, _, checkup, dental = vets
    held = await w.reserve(checkup, w.pet(), at(9), weber.id)
    assert (held.provider_id, held.assignment) == (weber.id, "CHOSEN")
    with pytest.raises(ProviderTaken):
        await w.reserve(dental, w.pet(), at(9), weber.id)
    other = await w.reserve(dental, w.pet(), at(9))  # "any": Okafor is free, and the room
    assert other.provider_id != weber.id and other.assignment == "ANY_FEWEST_THAT_DAY"


async def test_a_room_is_sold_once_across_services(vets) -> None:
    w, weber, okafor, room, _, dental = vets
    surgery = await w.require(w.service("Surgery", 60), [weber.id, okafor.id], (ServiceNeed("dental room"),))
    held = await w.reserve(dental, w.pet(), at(10), weber.id)
    assert held.resource_ids == (room.id,)
    with pytest.raises(ResourceTaken):
        await w.reserve(surgery, w.pet(), at(10), okafor.id)


async def test_a_pet_is_never_in_two_places(vets) -> None:
    w, weber, okafor, _, checkup, dental = vets
    pet = w.pet()
    await w.reserve(checkup, pet, at(9), weber.id)
    with pytest.raises(PetBusy):
        await w.reserve(dental, pet, at(9), okafor.id)
    capacity_only = w.service("Nail clipping", capacity=3)
    with pytest.raises(PetBusy):  # a capacity-only service claims the pet too
        await w.reserve(capacity_only, pet, at(9))
    await w.reserve(capacity_only, pet, at(9, 30))  # right after: free


async def test_a_chosen_provider_must_perform_the_service_and_work_then(vets) -> None:
    w, weber, _, _, checkup, _ = vets
    stranger = await w.h.admin.create_provider(w.admin, w.clinic.id, "Anna", None, every_weekday(8, 18))
    with pytest.raises(InvalidArgument) as bad:
        await w.reserve(checkup, w.pet(), at(9), stranger.id)
    assert bad.value.violations[0].reason == "PROVIDER_NOT_QUALIFIED"
    with pytest.raises(ProviderUnavailable):  # Weber works mornings only
        await w.reserve(checkup, w.pet(), at(14), weber.id)


async def test_any_spreads_over_the_qualified_vets_never_the_same_twice(vets) -> None:
    w, weber, okafor, _, checkup, _ = vets
    third = await w.h.admin.create_provider(w.admin, w.clinic.id, "Dr Lund", None, every_weekday(8, 18))
    await w.require(checkup, [weber.id, okafor.id, third.id])
    got = [await w.reserve(checkup, w.pet(), at(9)) for _ in range(3)]
    assert {r.provider_id for r in got} == {weber.id, okafor.id, third.id}
    with pytest.raises(SlotUnavailable):
        await w.reserve(checkup, w.pet(), at(9))


async def test_any_prefers_the_vet_with_fewest_bookings_that_day(vets) -> None:
    w, weber, okafor, _, checkup, _ = vets
    for hh in (8, 10):
        await w.reserve(checkup, w.pet(), at(hh), weber.id)
    assert (await w.reserve(checkup, w.pet(), at(11))).provider_id == okafor.id


async def test_a_lapsed_hold_never_blocks_and_a_retry_gets_its_first_answer(vets) -> None:
    w, weber, _, room, _, dental = vets
    lapsing = await w.reserve(dental, w.pet(), at(9), weber.id)
    w.now += timedelta(minutes=11)  # the hold lapsed; the sweeper has not expired it yet
    pet = w.pet()
    held = await w.reserve(dental, pet, at(9), weber.id, key="k1")
    assert (held.provider_id, held.resource_ids) == (weber.id, (room.id,))
    assert w.store.reservations[lapsing.lock_id].state.value == "EXPIRED"
    again = await w.reserve(dental, pet, at(9), weber.id, key="k1")
    assert again.lock_id == held.lock_id


async def test_the_day_view_names_the_free_vets_and_filters_by_vet(vets) -> None:
    w, weber, okafor, _, checkup, _ = vets
    await w.reserve(checkup, w.pet(), at(9), okafor.id)
    _, _, slots = await w.h.catalog.availability(checkup.id, DAY.isoformat())
    by_start = {s.start: s for s in slots}
    assert {p.id for p in by_start[at(9)].providers} == {weber.id}
    assert {p.id for p in by_start[at(8)].providers} == {weber.id, okafor.id}
    assert [p.id for p in by_start[at(14)].providers] == [okafor.id]  # Weber works mornings
    _, _, only = await w.h.catalog.availability(checkup.id, DAY.isoformat(), provider_id=weber.id)
    assert [s.start for s in only if s.remaining] == [at(h, m) for h in (8, 9, 10, 11) for m in (0, 30)]


async def test_the_month_view_says_which_days_have_a_free_slot(vets) -> None:
    w, weber, _, _, checkup, _ = vets
    await w.h.admin.create_time_off(w.admin, w.clinic.id, weber.id, at(0), at(0) + timedelta(days=1), "")
    await w.require(checkup, [weber.id])
    _, _, days = await w.h.catalog.available_days(checkup.id, "2030-01")
    free = {d for d, ok in days if ok}
    assert DAY not in free  # Weber's day off
    assert date(2030, 1, 9) in free and date(2030, 1, 12) not in free  # a Saturday: closed
    assert date(2030, 1, 1) in free  # today: its slots from 08:00 are still ahead
    assert len(days) == 31


async def test_admin_bad_input_is_refused_with_field_violations(vets) -> None:
    w, weber, _, _, checkup, _ = vets
    with pytest.raises(InvalidArgument) as overlap:
        await w.h.admin.create_provider(
            w.admin, w.clinic.id, "X", None, hours(("mon", 8, 12), ("mon", 11, 13))
        )
    assert {v.reason for v in overlap.value.violations} == {"INTERVALS_OVERLAP"}
    with pytest.raises(InvalidArgument) as outside:
        await w.h.admin.create_provider(w.admin, w.clinic.id, "X", None, hours(("sat", 8, 12)))
    assert outside.value.violations[0].reason == "OUTSIDE_CLINIC_HOURS"
    with pytest.raises(InvalidArgument) as need:
        await w.require(checkup, [weber.id], (ServiceNeed("x-ray"),))
    assert need.value.violations[0].field == "service.needs[0].resource_type"
    other = World()
    stranger = await other.h.admin.create_provider(
        other.admin, other.clinic.id, "Y", None, every_weekday(8, 9)
    )
    with pytest.raises(InvalidArgument) as foreign:
        await w.require(checkup, [weber.id, stranger.id])
    assert [v.field for v in foreign.value.violations] == ["service.provider_ids[1]"]
    assert set((await w.h.catalog.get_service(checkup.id))[0].provider_ids) == {
        weber.id,
        *(await w.h.catalog.get_service(checkup.id))[0].provider_ids,
    }  # unchanged: nothing half-written


async def test_archiving_a_booked_vet_is_refused_and_time_off_lists_the_bookings(vets) -> None:
    w, weber, _, room, _, dental = vets
    held = await w.reserve(dental, w.pet(), at(9), weber.id)
    booking = await w.h.reservations.confirm(held.lock_id, uuid.uuid4())
    assert (booking.provider_id, booking.resource_ids) == (weber.id, (room.id,))
    with pytest.raises(HasUpcomingBookings) as refused:
        await w.h.admin.archive_provider(w.admin, w.clinic.id, weber.id, "")
    assert str(booking.id) in refused.value.metadata["booking_ids"]
    with pytest.raises(HasUpcomingBookings):
        await w.h.admin.archive_resource(w.admin, w.clinic.id, room.id, "")
    _, affected = await w.h.admin.create_time_off(w.admin, w.clinic.id, weber.id, at(8), at(12), "Dentist")
    assert [b.id for b in affected] == [booking.id]
    _, uncovered = await w.h.admin.update_provider(
        w.admin, w.clinic.id, weber.id, "", None, every_weekday(13, 18), ["weekly_hours"], ""
    )
    assert [b.id for b in uncovered] == [booking.id]
    with pytest.raises(InvalidArgument):
        await w.h.admin.create_time_off(w.admin, w.clinic.id, weber.id, at(11), at(13), "")  # overlaps


async def test_a_scheduled_reschedule_moves_every_claim(vets) -> None:
    w, weber, okafor, _, checkup, _ = vets
    pet = w.pet()
    held = await w.reserve(checkup, pet, at(9), weber.id)
    booking = await w.h.reservations.confirm(held.lock_id, uuid.uuid4())
    await w.reserve(checkup, w.pet(), at(10), weber.id)
    with pytest.raises(SlotUnavailable):
        await w.h.lifecycle.reschedule(uuid.uuid4().hex, booking.id, pet.owner_user_id, at(10))
    moved = await w.h.lifecycle.reschedule(uuid.uuid4().hex, booking.id, pet.owner_user_id, at(11))
    assert moved.start == at(11)
    again = await w.reserve(checkup, w.pet(), at(9), weber.id)  # the old time is free again
    assert again.provider_id == weber.id and okafor.id != weber.id


# -- the property: availability and holds agree ----------------------------------------------------

SLOTS = [at(h, m) for h in range(8, 18) for m in (0, 30)]


@st.composite
def clinics(draw: st.DrawFn) -> dict[str, object]:
    n_vets = draw(st.integers(1, 3))
    vets = [
        (draw(st.integers(8, 12)), draw(st.integers(13, 18)))  # each vet's hours that Tuesday
        for _ in range(n_vets)
    ]
    rooms = draw(st.integers(0, 2))
    services = [
        (
            draw(st.sampled_from([30, 60])),
            draw(st.lists(st.integers(0, n_vets - 1), min_size=0, max_size=n_vets, unique=True)),
            draw(st.integers(0, min(rooms, 1))),
            draw(st.sampled_from([0, 10])),
        )
        for _ in range(draw(st.integers(1, 3)))
    ]
    bookings = draw(
        st.lists(
            st.tuples(st.integers(0, len(services) - 1), st.sampled_from(SLOTS), st.integers(0, 3)),
            max_size=8,
        )
    )
    probe = (draw(st.integers(0, len(services) - 1)), draw(st.integers(0, 3)))
    return {"vets": vets, "rooms": rooms, "services": services, "bookings": bookings, "probe": probe}


async def build(spec: dict[str, object]) -> tuple[World, list[Service], list[Pet]]:
    w = World()
    vet_ids = []
    for i, (a, b) in enumerate(spec["vets"]):  # type: ignore[attr-defined]
        p = await w.h.admin.create_provider(w.admin, w.clinic.id, f"Vet {i}", None, hours(("tue", a, b)))
        vet_ids.append(p.id)
    for i in range(spec["rooms"]):  # type: ignore[call-overload]
        await w.h.admin.create_resource(w.admin, w.clinic.id, f"Room {i}", "room", ())
    services = []
    for i, (minutes, vets, room, buffer) in enumerate(spec["services"]):  # type: ignore[attr-defined]
        svc = w.service(f"S{i}", minutes, buffer_after_minutes=buffer, capacity=2)
        if vets or room:
            svc = await w.require(svc, [vet_ids[v] for v in vets], (ServiceNeed("room", 1),) if room else ())
        services.append(svc)
    pets = [w.pet() for _ in range(4)]
    for s, start, p in spec["bookings"]:  # type: ignore[attr-defined]
        try:
            await w.reserve(services[s], pets[p], start)
        except DomainError:
            pass  # off the grid, outside hours, taken: the random schedule skips it
    return w, services, pets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=clinics())
async def test_availability_offers_exactly_what_can_be_held(spec: dict[str, object]) -> None:
    w, services, pets = await build(spec)
    s, p = spec["probe"]  # type: ignore[misc]
    svc, pet = services[s], pets[p]
    _, _, slots = await w.h.catalog.availability(svc.id, DAY.isoformat(), pet_id=pet.id)
    for slot in slots:
        offered = slot.remaining > 0
        try:
            res = await w.reserve(svc, pet, slot.start)
        except DomainError:
            assert not offered, f"offered {slot.start} but the hold failed"
        else:
            assert offered, f"held {slot.start} that availability did not offer"
            w.store.reservations.pop(res.lock_id)  # undo: the next slot sees the same schedule


async def test_a_providers_hours_follow_the_wall_clock_on_a_dst_day() -> None:
    """Berlin skips 02:00-03:00 on 2030-03-31: a vet working 01:00-05:00 local works three real hours."""
    w = World("Europe/Berlin")
    w.clinic.opening_hours["sun"] = [Interval(time(0), time(23))]
    vet = await w.h.admin.create_provider(w.admin, w.clinic.id, "Dr Night", None, hours(("sun", 1, 5)))
    svc = await w.require(w.service("Emergency"), [vet.id])
    _, _, slots = await w.h.catalog.availability(svc.id, "2030-03-31")
    free = [s.start for s in slots if s.remaining]
    assert len(free) == 6 and free[0] == datetime(2030, 3, 31, 0, tzinfo=UTC)  # 01:00 CET
    assert free[-1] == datetime(2030, 3, 31, 2, 30, tzinfo=UTC)  # 04:30 CEST
    held = await w.reserve(svc, w.pet(), free[-1])
    assert held.provider_id == vet.id


async def test_the_assignment_travels_in_the_event_to_the_clinic_feed(vets) -> None:
    from booking_svc.adapters.codecs import encode_booking_created
    from notif_worker.adapters.codecs import decode_booking_created, encode_clinic_event
    from petpro_api.notification.v1 import clinic_feed_pb2

    w, weber, _, room, _, dental = vets
    pet = w.pet()
    held = await w.reserve(dental, pet, at(9), weber.id)
    booking = await w.h.reservations.confirm(held.lock_id, uuid.uuid4())
    sched = await w.h.catalog.schedule(w.clinic.id)
    payload = encode_booking_created(uuid.uuid4(), booking, held, dental, w.clinic, pet, NOW, sched)
    notice = decode_booking_created(payload)
    assert (notice.provider_name, notice.resources) == (
        "Dr Weber",
        ((str(room.id), "Dental 1", "dental room"),),
    )
    feed = clinic_feed_pb2.ClinicEvent.FromString(encode_clinic_event(notice, 1))
    assert feed.booking.provider.display_name == "Dr Weber"
    assert [r.display_name for r in feed.booking.resources] == ["Dental 1"]


async def test_a_capacity_service_ignores_a_provider_and_a_service_given_vets_is_scheduled_at_once(
    vets,
) -> None:
    w, weber, _, _, _, _ = vets
    plain = w.service("Nail clipping", capacity=2)
    held = await w.reserve(plain, w.pet(), at(9), weber.id)  # no providers: capacity as before
    assert (held.provider_id, held.unit) == (None, 1)
    await w.h.catalog.get_service(plain.id)  # in the memo as capacity-only
    await w.require(plain, [weber.id])
    second = await w.reserve(plain, w.pet(), at(10))
    assert second.provider_id == weber.id


async def test_a_retried_scheduled_hold_gets_its_first_answer(vets) -> None:
    w, weber, _, _, checkup, _ = vets
    pet = w.pet()
    first = await w.reserve(checkup, pet, at(9), key="k1")  # "any"
    again = await w.reserve(checkup, pet, at(9), key="k1")  # the pet is busy now: yet the same answer
    assert again.lock_id == first.lock_id and len(w.store.reservations) == 1
    with pytest.raises(DomainError):  # the same key for another request
        await w.reserve(checkup, pet, at(10), weber.id, key="k1")
