"""The clinic's locale (issue 22): a clinic admin sets a well-formed BCP 47 tag (stored in canonical case,
cleared with ""), it travels as ``clinic_locale`` in every booking event, and an owner without a locale
of their own, or with one we do not speak, reads the clinic's language; an owner who chose one keeps it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time

import pytest

from booking_svc.adapters.codecs import encode_booking_change, encode_booking_created
from booking_svc.domain import Actor, Clinic, EtagMismatch, Interval, Pet, Service
from booking_svc.handlers import ClinicProfile, ReserveCommand, WeeklyHours
from booking_svc.seed import parse_clinic
from notif_worker.adapters.codecs import decode_event
from notif_worker.domain.wording import mail_content, push_message
from petpro.authn import Principal
from petpro.errors import InvalidArgument
from tests.unit.fakes.booking import BookingStore, booking_use_cases

NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)  # a Tuesday
TUESDAY = datetime(2030, 1, 8, tzinfo=UTC).date()


@pytest.fixture
def world():
    store = BookingStore()
    clinic = Clinic(uuid.uuid4(), "Happy Paws", "Europe/Berlin", {"tue": [Interval(time(8), time(12))]})
    svc = Service(uuid.uuid4(), clinic.id, "Check-up", 30, 4500, "EUR")
    store.clinics[clinic.id], store.services[svc.id] = clinic, svc
    uc = booking_use_cases(
        store, clock=lambda: NOW, encode_created=encode_booking_created, encode_change=encode_booking_change
    )
    m = {str(clinic.id): "ADMIN"}
    admin = Principal(str(uuid.uuid4()), "a@b.c", "A", frozenset({"CLINIC_STAFF"}), frozenset(m), 2e9, m)
    return uc, store, clinic, svc, admin


async def test_an_admin_sets_the_locale_in_canonical_case_with_the_etag_and_clears_it(world) -> None:
    uc, _, clinic, _, admin = world
    got = await uc.admin.update_clinic(admin, clinic.id, ClinicProfile(locale="de-de"), ["locale"], "c1")
    assert (got.locale, got.etag) == ("de-DE", "c2")
    with pytest.raises(EtagMismatch):
        await uc.admin.update_clinic(admin, clinic.id, ClinicProfile(locale="fr-FR"), ["locale"], "c1")
    got = await uc.admin.update_clinic(admin, clinic.id, ClinicProfile(name="Renamed"), ["name"], "")
    assert got.locale == "de-DE"  # outside the mask: kept
    got = await uc.admin.update_clinic(admin, clinic.id, ClinicProfile(locale=""), ["locale"], "")
    assert got.locale == ""


@pytest.mark.parametrize("bad", ["de_DE", "german!", "x-private", "de-" + "a" * 40, "e" * 36])
async def test_a_malformed_or_too_long_locale_is_a_field_violation(world, bad: str) -> None:
    uc, store, clinic, _, admin = world
    with pytest.raises(InvalidArgument) as exc:
        await uc.admin.update_clinic(admin, clinic.id, ClinicProfile(locale=bad), ["locale"], "")
    assert [(v.field, v.reason) for v in exc.value.violations] == [("clinic.locale", "LOCALE_INVALID")]
    assert store.clinics[clinic.id].locale == "" and store.clinics[clinic.id].version == 1


async def test_a_created_clinic_keeps_its_locale() -> None:
    store = BookingStore()
    uc = booking_use_cases(store, clock=lambda: NOW)
    root = Principal(str(uuid.uuid4()), "r@b.c", "R", frozenset({"PLATFORM_ADMIN"}), frozenset(), 2e9, {})
    made = await uc.admin.create_clinic(
        root, ClinicProfile(name="Chez Minou", time_zone="Europe/Paris", locale="FR-fr"), WeeklyHours(())
    )
    assert made.locale == "fr-FR" and store.clinics[made.id].locale == "fr-FR"
    with pytest.raises(InvalidArgument):
        await uc.admin.create_clinic(
            root, ClinicProfile(name="X", time_zone="Europe/Paris", locale="fr FR"), WeeklyHours(())
        )


@pytest.mark.parametrize(
    ("owner_locale", "subject_start", "push_start"),
    [
        ("", "Buchung bestätigt:", "Buchung bestätigt"),  # never chose: the clinic's language
        ("pt-BR", "Buchung bestätigt:", "Buchung bestätigt"),  # one we do not speak: the clinic's
        ("en", "Booking confirmed:", "Booking confirmed"),  # chose English: stays English
        ("fr-CH", "Réservation confirmée", "Réservation confirmée"),  # chose French: French
    ],
)
async def test_the_encoded_events_carry_the_clinic_locale_and_the_wording_falls_back_to_it(
    world, owner_locale: str, subject_start: str, push_start: str
) -> None:
    uc, store, clinic, svc, admin = world
    await uc.admin.update_clinic(admin, clinic.id, ClinicProfile(locale="de-DE"), ["locale"], "")
    owner = uuid.uuid4()
    pet = Pet(uuid.uuid4(), owner, "Rex", "DOG")
    store.pets[pet.id] = pet
    slot = (await uc.catalog.availability(svc.id, TUESDAY.isoformat()))[2][0].start
    res = await uc.reservations.reserve(
        ReserveCommand("r1", owner, "o@x.co", "Jo", svc.id, pet.id, slot, owner_locale=owner_locale)
    )
    booked = await uc.reservations.confirm(res.lock_id, uuid.uuid4())
    await uc.lifecycle.cancel(str(uuid.uuid4()), booked.id, Actor.OWNER, "", owner=owner)

    created, cancelled = (decode_event(e.topic, e.payload) for e in store.outbox)
    assert (created.kind, cancelled.kind) == ("created", "cancelled")
    assert {(n.clinic_locale, n.owner_locale) for n in (created, cancelled)} == {("de-DE", owner_locale)}
    assert mail_content(created).subject.startswith(subject_start), mail_content(created).subject
    assert push_message(created)[0].startswith(push_start), push_message(created)[0]
    cancel_subject = mail_content(cancelled).subject
    assert cancel_subject.startswith("Buchung storniert") == (subject_start == "Buchung bestätigt:")


def test_the_seed_reads_a_clinics_locale_in_canonical_case_and_refuses_a_malformed_one() -> None:
    raw = {"id": str(uuid.uuid4()), "name": "Happy Paws", "time_zone": "Europe/Berlin", "locale": "de-de"}
    assert parse_clinic(raw)[0].locale == "de-DE"
    assert parse_clinic({**raw, "locale": None})[0].locale == ""
    with pytest.raises(InvalidArgument):
        parse_clinic({**raw, "locale": "de_DE"})
