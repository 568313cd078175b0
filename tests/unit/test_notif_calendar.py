"""What an owner reads: the calendar event of a booking email (RFC 5545, read back by icalendar AND
the independent ``ics`` parser, across both DST changes of Europe/Berlin), the language and formats of
the messages, the quiet hours of reminders, and the same instant in the email, the event and the push."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar
import ics
import pytest

from notif_worker.adapters.calendar import feed, invitation
from notif_worker.adapters.mail import encoded_word, render
from notif_worker.domain import (
    BookingNotice,
    QuietHours,
    locale_of,
    mail_content,
    push_message,
    reminder_send_time,
)
from notif_worker.domain.wording import PHRASES, money, when
from tests.unit.fakes.notif import booking_notice

BERLIN = ZoneInfo("Europe/Berlin")
# the last Sunday of March 2026: 02:00 CET → 03:00 CEST; the last Sunday of October: 03:00 CEST → 02:00 CET
SPRING = datetime(2026, 3, 29, tzinfo=BERLIN)
AUTUMN = datetime(2026, 10, 25, tzinfo=BERLIN)
SENDER = "PetPro <bookings@petpro.dev>"


def notice(start: datetime, **changes: object) -> BookingNotice:
    return booking_notice(start, **changes)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def both_parsers(data: bytes) -> tuple[icalendar.Event, ics.Event]:
    """The single event as icalendar and as ics read it."""
    (a,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    (b,) = ics.Calendar(data.decode()).events
    return a, b


# -- the invitation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "local_start",
    [
        SPRING.replace(hour=1, minute=30),  # before the spring change (CET, +01:00)
        SPRING.replace(hour=10),  # after it (CEST, +02:00)
        AUTUMN.replace(hour=1, minute=30),  # before the autumn change (CEST)
        AUTUMN.replace(hour=10),  # after it (CET)
    ],
)
def test_both_parsers_read_the_invitation_as_the_same_instant_across_dst(local_start: datetime) -> None:
    n = notice(local_start)
    method, data = invitation(n, SENDER, "https://app.petpro.dev/bookings")
    a, b = both_parsers(data)
    assert method == "REQUEST"
    assert icalendar.Calendar.from_ical(data)["METHOD"] == "REQUEST"
    # compared in UTC: an ambiguous local time (02:00 on the autumn day) never equals across zones
    assert utc(a.decoded("dtstart")) == utc(b.begin.datetime) == n.start
    assert utc(a.decoded("dtend")) == utc(b.end.datetime) == n.end
    assert a.decoded("dtstart").utcoffset() == local_start.utcoffset()  # the clinic's zone, not UTC
    assert str(a["uid"]) == b.uid == f"{n.booking_id}@petpro.dev"
    assert int(a["sequence"]) == 1
    assert "Torstraße 1" in str(a["location"]) and str(a["url"]).endswith(n.booking_id)
    # the VTIMEZONE of the clinic's zone, with the offsets around the date
    (tz,) = icalendar.Calendar.from_ical(data).walk("VTIMEZONE")
    assert str(tz["tzid"]) == "Europe/Berlin"
    offsets = {c.decoded("tzoffsetto") for c in tz.subcomponents}
    assert {timedelta(hours=1), timedelta(hours=2)} <= offsets


def test_a_move_updates_the_same_event_with_a_higher_sequence_and_a_cancel_cancels_it() -> None:
    first = notice(SPRING.replace(hour=10))
    moved = replace(
        first,
        kind="rescheduled",
        version=2,
        start=first.start + timedelta(days=1),
        end=first.end + timedelta(days=1),
    )
    cancelled = replace(moved, kind="cancelled", version=3)
    (_, c1), (_, c2), (m3, c3) = (invitation(x, SENDER) for x in (first, moved, cancelled))
    e1, e2, e3 = (both_parsers(c)[0] for c in (c1, c2, c3))
    assert e1["uid"] == e2["uid"] == e3["uid"]
    assert [int(e["sequence"]) for e in (e1, e2, e3)] == [1, 2, 3]
    assert e2.decoded("dtstart") == moved.start
    assert m3 == "CANCEL" and icalendar.Calendar.from_ical(c3)["METHOD"] == "CANCEL"
    assert str(e3["status"]) == "CANCELLED" and str(e2["status"]) == "CONFIRMED"
    assert both_parsers(c3)[1].status == "CANCELLED"


def test_the_feed_lists_every_booking_once_with_its_own_offset() -> None:
    spring, autumn = notice(SPRING.replace(hour=10)), notice(AUTUMN.replace(hour=10), version=4)
    data = feed([spring, autumn], SENDER, "", "de")
    cal = icalendar.Calendar.from_ical(data)
    assert cal["METHOD"] == "PUBLISH" and "PetPro" in str(cal["X-WR-CALNAME"])
    events = {str(e["uid"]): e for e in cal.walk("VEVENT")}
    assert events[f"{spring.booking_id}@petpro.dev"].decoded("dtstart") == spring.start
    assert events[f"{autumn.booking_id}@petpro.dev"].decoded("dtstart") == autumn.start
    assert int(events[f"{autumn.booking_id}@petpro.dev"]["sequence"]) == 4
    other = {e.uid: utc(e.begin.datetime) for e in ics.Calendar(data.decode()).events}
    assert other == {
        f"{spring.booking_id}@petpro.dev": spring.start,
        f"{autumn.booking_id}@petpro.dev": autumn.start,
    }
    assert len(cal.walk("VTIMEZONE")) == 1  # one zone for both


def test_an_empty_feed_is_a_valid_calendar() -> None:
    data = feed([], SENDER)
    assert icalendar.Calendar.from_ical(data).walk("VEVENT") == []
    assert list(ics.Calendar(data.decode()).events) == []


# -- the email carries it; the same instant everywhere -------------------------------------------------


def test_the_email_carries_the_event_and_shows_the_instant_the_event_and_the_push_show() -> None:
    n = notice(SPRING.replace(hour=10))
    msg = email.message_from_string(render(n, SENDER, "https://app.petpro.dev/bookings").as_string())
    parts = {p.get_content_type(): p for p in msg.walk()}
    cal = parts["text/calendar"]
    assert cal.get_param("method") == "REQUEST"
    event, other = both_parsers(cal.get_payload(decode=True))
    text = parts["text/plain"].get_payload(decode=True).decode()
    _, _, data = push_message(n)
    pushed = datetime.fromisoformat(data["start_time"])
    assert event.decoded("dtstart") == other.begin.datetime == pushed == n.start
    assert "10:00" in text and "Central European Summer Time (Europe/Berlin)" in text
    assert pushed.utcoffset() == timedelta(hours=2) and data["time_zone"] == "Europe/Berlin"


def test_reminders_and_outcomes_carry_no_calendar_part() -> None:
    for kind in ("reminder", "completed", "no_show"):
        msg = render(notice(SPRING.replace(hour=10), kind=kind), SENDER)
        assert "text/calendar" not in {p.get_content_type() for p in msg.walk()}, kind


# -- the assigned provider and resource items (issue 20) ------------------------------------------------

WEBER = {
    "provider_id": "9a1e0c7b-5d2f-4b8a-9c01-3e4f5a6b7c01",
    "provider_name": "Dr Weber",
    "resources": (("9a1e0c7b-5d2f-4b8a-9c01-3e4f5a6b7d01", "Dental room", "dental room"),),
}


def parts_of(n: BookingNotice) -> tuple[str, str, icalendar.Event]:
    """(text body, HTML body, calendar event) of a booking email."""
    msg = email.message_from_string(render(n, SENDER, "https://app.petpro.dev/bookings").as_string())
    parts = {p.get_content_type(): p for p in msg.walk()}
    text, page = (parts[t].get_payload(decode=True).decode() for t in ("text/plain", "text/html"))
    event, _ = both_parsers(parts["text/calendar"].get_payload(decode=True))
    return text, page, event


@pytest.mark.parametrize("kind", ["created", "rescheduled", "cancelled"])
def test_every_email_with_a_calendar_part_names_the_assigned_vet_and_room(kind: str) -> None:
    n = notice(SPRING.replace(hour=10), kind=kind, service_name="Dental cleaning", **WEBER)
    text, page, event = parts_of(n)
    assert "Dental cleaning with Dr Weber" in text and "Dental cleaning with Dr Weber" in page
    assert "Torstraße 1, 10119 Berlin (Dental room)" in text
    assert str(event["summary"]) == "Dental cleaning with Dr Weber for Rex at Happy Paws"
    assert str(event["description"]).splitlines()[0] == "Dental cleaning with Dr Weber"
    assert str(event["location"]) == "Happy Paws, Torstraße 1, 10119 Berlin (Dental room)"


def test_a_booking_without_a_provider_reads_as_before() -> None:
    n = notice(SPRING.replace(hour=10))
    text, _, event = parts_of(n)
    assert " with " not in text and "(Dental room)" not in text
    assert dict(mail_content(n).rows)["Service"] == "Check-up"
    assert str(event["summary"]) == "Check-up for Rex at Happy Paws"
    assert str(event["description"]).startswith(f"Reference: {n.reference}")
    assert str(event["location"]) == "Happy Paws, Torstraße 1, 10119 Berlin"
    _, body, _ = push_message(n)
    assert body.startswith("Rex at Happy Paws, ")


@pytest.mark.parametrize(
    ("kind", "starts"),
    [
        ("created", "Rex with Dr Weber at Happy Paws, Sun, Mar 29"),
        ("rescheduled", "Rex with Dr Weber at Happy Paws, now Sun, Mar 29"),
        ("reminder", "With Dr Weber at Happy Paws, Sun, Mar 29"),
        ("cancelled", "Rex with Dr Weber at Happy Paws, Sun, Mar 29"),
        ("completed", "Rex with Dr Weber at Happy Paws, Sun, Mar 29"),
    ],
)
def test_the_push_names_the_assigned_provider(kind: str, starts: str) -> None:
    title, body, _ = push_message(notice(SPRING.replace(hour=10), kind=kind, **WEBER))
    assert body.startswith(starts), body
    assert "Dr Weber" not in title  # the title stays the service's


def test_a_reminder_email_names_the_provider_too() -> None:
    c = mail_content(notice(SPRING.replace(hour=10), kind="reminder", **WEBER))
    assert dict(c.rows)["Service"] == "Check-up with Dr Weber"


def test_a_german_owner_reads_bei_dr_weber_everywhere() -> None:
    n = notice(SPRING.replace(hour=10), owner_locale="de-DE", service_name="Zahnreinigung", **WEBER)
    rows = dict(mail_content(n).rows)
    assert rows["Leistung"] == "Zahnreinigung bei Dr Weber"
    assert rows["Wo"] == "Torstraße 1, 10119 Berlin (Dental room)"
    text, _, event = parts_of(n)
    assert "Zahnreinigung bei Dr Weber" in text
    assert str(event["summary"]) == "Zahnreinigung bei Dr Weber für Rex bei Happy Paws"
    assert str(event["description"]).splitlines()[:2] == [
        "Zahnreinigung bei Dr Weber",
        f"Referenz: {n.reference}",
    ]
    _, body, _ = push_message(n)
    assert body.startswith("Rex bei Dr Weber, Happy Paws, So., 29. März"), body
    _, body, _ = push_message(replace(n, kind="reminder"))
    assert body.startswith("Bei Dr Weber, Happy Paws, "), body


@pytest.mark.parametrize(
    ("lang", "words"), [("fr", "Check-up avec Dr Weber"), ("es", "Check-up con Dr Weber")]
)
def test_french_and_spanish_owners_read_the_provider_in_their_words(lang: str, words: str) -> None:
    n = notice(SPRING.replace(hour=10), owner_locale=lang, **WEBER)
    assert words in [v for _, v in mail_content(n).rows]
    assert "Dr Weber" in push_message(n)[1]


def test_rooms_without_an_address_are_where_the_visit_is() -> None:
    n = notice(SPRING.replace(hour=10), clinic_address="", **WEBER)
    assert dict(mail_content(n).rows)["Where"] == "Dental room"
    _, _, event = parts_of(n)
    assert str(event["location"]) == "Happy Paws, Dental room"


def test_reminders_and_the_feed_keep_the_assignment_they_were_stored_with() -> None:
    from notif_worker.adapters.repository import booking_data, notice_from, reminder_data

    n = notice(SPRING.replace(hour=10), **WEBER)
    for data in (reminder_data(n), booking_data(n)):
        back = notice_from(
            json.loads(json.dumps(data)),  # as the JSON column gives it back
            event_id=n.event_id,
            occurred_at=n.occurred_at,
            booking_id=n.booking_id,
            start=n.start,
            end=n.end,
        )
        assert (back.provider_id, back.provider_name, back.resources) == (
            WEBER["provider_id"],
            "Dr Weber",
            WEBER["resources"],
        )
    old = {k: v for k, v in reminder_data(n).items() if k not in ("provider_id", "provider", "resources")}
    back = notice_from(
        old, event_id=n.event_id, occurred_at=n.occurred_at, booking_id="b", start=n.start, end=n.end
    )
    assert (back.provider_name, back.resources) == ("", ())  # stored before: a capacity-only reading


# -- language ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "clinic", "chosen"),
    [
        ("de", "", "de"),
        ("de-AT", "fr-FR", "de"),  # the owner's first
        ("", "fr-FR", "fr"),  # else the clinic's
        ("es_ES", "", "es"),
        ("pt-BR", "", "en"),  # a language we do not speak: English
        ("pt-BR", "es", "es"),
        ("", "", "en"),
        ("not a tag", "", "en"),
        ("DE-de", "", "de"),  # case-insensitive
        ("zh-Hant-TW", "fr", "fr"),  # script subtags parse; no CLDR data is needed to refuse a language
    ],
)
def test_the_locale_is_the_owners_else_the_clinics_else_english(owner: str, clinic: str, chosen: str) -> None:
    assert locale_of(owner, clinic) == chosen


def test_the_image_keeps_the_cldr_data_of_exactly_the_languages_we_speak() -> None:
    """The Dockerfile prunes babel's locale data to its LOCALES (31 MB of the others): they must be the
    languages the phrases exist in, or a German owner's dates would fail to format in production."""
    import re
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    found = re.search(r'^ARG LOCALES="([^"]*)"', dockerfile, re.M)
    assert found, "the Dockerfile names the CLDR languages it keeps (ARG LOCALES)"
    assert sorted(found.group(1).split()) == sorted(PHRASES)


def test_every_locale_has_every_phrase_and_placeholder() -> None:
    keys = set(PHRASES["en"])
    for lang, phrases in PHRASES.items():
        assert set(phrases) == keys, lang
        for key in keys:
            fields = {
                f
                for f in ("{service}", "{pet}", "{clinic}", "{amount}", "{at}", "{reason}", "{provider}")
                if f in PHRASES["en"][key]
            }
            assert all(f in phrases[key] for f in fields), (lang, key)


def test_a_german_owner_gets_german_words_dates_and_money() -> None:
    n = notice(SPRING.replace(hour=10), owner_locale="de")
    c = mail_content(n)
    assert c.locale == "de" and c.subject.startswith("Buchung bestätigt: Check-up für Rex am So., 29. März")
    rows = dict(c.rows)
    assert rows["Bezahlt"] == "45,50\xa0€"
    assert (
        rows["Wann"]
        == "Sonntag, 29. März 2026, 10:00 \u2013 10:30 Mitteleuropäische Sommerzeit (Europe/Berlin)"
    )
    title, body, _ = push_message(replace(n, kind="cancelled", refund_minor=4550))
    assert title == "Buchung storniert: Check-up" and "Erstattung 45,50\xa0€" in body
    msg = render(n, SENDER)
    assert msg["Content-Language"] == "de"


def test_a_clinic_locale_applies_when_the_owner_has_none_and_money_follows_the_currency() -> None:
    n = notice(AUTUMN.replace(hour=10), clinic_locale="fr-FR")
    assert mail_content(n).locale == "fr"
    assert "heure normale d\u2019Europe centrale" in when(n, "fr")  # after the autumn change: winter time
    assert money(4550, "EUR", "en") == "€45.50"
    assert money(4550, "JPY", "de") == "4.550\xa0¥"  # no minor units
    assert money(4550, "EUR", "es") == "45,50\xa0€"


# -- quiet hours ---------------------------------------------------------------------------------------


def test_a_reminder_due_at_three_goes_at_the_end_of_quiet_hours() -> None:
    q = QuietHours()  # 21:00-08:00
    due = datetime(2026, 1, 14, 3, tzinfo=BERLIN)
    visit = datetime(2026, 1, 14, 10, tzinfo=BERLIN)
    assert reminder_send_time(due, visit, "Europe/Berlin", q) == datetime(2026, 1, 14, 8, tzinfo=BERLIN)
    evening = datetime(2026, 1, 13, 22, 30, tzinfo=BERLIN)  # after the start: ends the next morning
    assert reminder_send_time(evening, visit, "Europe/Berlin", q) == datetime(2026, 1, 14, 8, tzinfo=BERLIN)
    noon = datetime(2026, 1, 13, 12, tzinfo=BERLIN)
    assert reminder_send_time(noon, visit, "Europe/Berlin", q) == noon  # outside: at once


def test_a_reminder_never_goes_after_the_visit_has_started() -> None:
    due = datetime(2026, 1, 14, 5, 30, tzinfo=BERLIN)
    visit = datetime(2026, 1, 14, 7, 30, tzinfo=BERLIN)  # before the quiet hours end
    assert reminder_send_time(due, visit, "Europe/Berlin", QuietHours()) is None
    assert (
        reminder_send_time(due, visit + timedelta(minutes=30), "Europe/Berlin", QuietHours()) is None
    )  # 08:00


def test_quiet_hours_end_in_local_time_across_both_dst_changes() -> None:
    q = QuietHours()
    spring = reminder_send_time(
        datetime(2026, 3, 29, 1, tzinfo=UTC), SPRING.replace(hour=12), "Europe/Berlin", q
    )
    autumn = reminder_send_time(
        datetime(2026, 10, 25, 1, tzinfo=UTC), AUTUMN.replace(hour=12), "Europe/Berlin", q
    )
    assert spring == datetime(2026, 3, 29, 6, tzinfo=UTC)  # 08:00 CEST
    assert autumn == datetime(2026, 10, 25, 7, tzinfo=UTC)  # 08:00 CET
    # an end that does not exist on the spring day (02:30) is taken forward by the gap
    odd = QuietHours.parse("23:00", "02:30").end_after(
        datetime(2026, 3, 29, 0, 10, tzinfo=BERLIN), "Europe/Berlin"
    )
    assert odd == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_quiet_hours_within_a_day_and_none() -> None:
    lunch = QuietHours(time(12), time(14))
    assert lunch.contains(time(13)) and not lunch.contains(time(14)) and not lunch.contains(time(11, 59))
    assert not QuietHours(time(8), time(8)).contains(time(8))
    assert str(QuietHours()) == "21:00-08:00"
    with pytest.raises(Exception, match="HH:MM"):
        QuietHours.parse("25:00", "08:00")


@pytest.mark.parametrize(
    "subject",
    [
        "Booking confirmed: Check-up for Rex on Sun, Mar 29, 10:00\u202fAM Central European Summer Time",
        "Buchung bestätigt: Check-up für Rex am So., 29. März, 10:00 Mitteleuropäische Sommerzeit",
        "Réservation confirmée : " + "é" * 60,
    ],
)
def test_subjects_survive_the_wire_in_any_language(subject: str) -> None:
    n = notice(SPRING.replace(hour=10))
    msg = render(n, SENDER)
    msg.replace_header("Subject", encoded_word(subject))
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert str(parsed["Subject"]) == subject.replace("\u202f", " ")
    assert all(len(line) <= 998 for line in msg.as_string().splitlines())  # RFC 5322's hard limit
    assert all(len(word) <= 75 for word in encoded_word(subject).split())  # RFC 2047's


def test_preload_loads_every_spoken_languages_locale_data_up_front() -> None:
    """The notif worker loads Babel's locale data at start (a background task), not inside the first
    message in each language."""
    import babel.localedata

    from notif_worker.domain.wording import SUPPORTED, preload

    preload()
    assert set(SUPPORTED) <= set(babel.localedata._cache)
