"""iCalendar (RFC 5545) with the ``icalendar`` library: the invitation a booking email carries
(METHOD:REQUEST for a confirmation or a move, METHOD:CANCEL for a cancellation, RFC 5546) and the
owner's private feed (METHOD:PUBLISH).  One event per booking: UID ``<booking id>@petpro.dev``,
SEQUENCE the booking's version, times in the clinic's zone with its VTIMEZONE, so a calendar updates
the same event in place and never shows it twice."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date
from email.utils import parseaddr
from functools import lru_cache

from icalendar import Calendar, Event, Timezone, vCalAddress, vText

from notif_worker.domain import BookingNotice, event_uid, locale_of
from notif_worker.domain.wording import phrase, place, service_line

PRODID = "-//PetPro//Notifications//EN"


@lru_cache(maxsize=64)
def _vtimezone(zone: str, first_year: int, last_year: int) -> bytes:
    """The zone's VTIMEZONE for those years, built from the tz database and serialised by icalendar
    once per zone and span (building and folding it was most of an invitation's CPU)."""
    tz = Timezone.from_tzid(zone, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31))
    return bytes(tz.to_ical())


def _event(n: BookingNotice, organizer: str, link_base: str, *, cancelled: bool) -> Event:
    lang = locale_of(n.owner_locale, n.clinic_locale)
    e = Event()
    e.add("uid", event_uid(n.booking_id))
    e.add("sequence", n.version)
    e.add("dtstamp", n.occurred_at.astimezone(UTC))
    e.add("dtstart", n.local_start)
    e.add("dtend", n.local_end)
    service = service_line(n, lang)  # with the assigned provider, if any
    e.add("summary", phrase(lang, "event_summary", service=service, pet=n.pet_name, clinic=n.clinic_name))
    e.add("location", ", ".join(p for p in (n.clinic_name, place(n)) if p))
    description = f"{phrase(lang, 'reference')}: {n.reference}"
    if n.provider_name:
        description = f"{service}\n{description}"
    if link_base:
        url = f"{link_base.rstrip('/')}/{n.booking_id}"
        e.add("url", url)
        description += f"\n{url}"
    e.add("description", description)
    e.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    org = vCalAddress(f"mailto:{parseaddr(organizer)[1] or organizer}")
    org.params["CN"] = vText(n.clinic_name)
    e.add("organizer", org)
    att = vCalAddress(f"mailto:{n.owner_email}")
    if n.owner_name:
        att.params["CN"] = vText(n.owner_name)
    att.params["PARTSTAT"] = vText("ACCEPTED")
    e.add("attendee", att)
    return e


def _calendar(method: str, zones: dict[str, set[int]], events: list[Event], name: str = "") -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    if name:
        cal.add("x-wr-calname", name)
    cal.subcomponents.extend(events)
    body = bytes(cal.to_ical())
    # the VTIMEZONEs (icalendar's own serialisation, cached) go before the first event (RFC 5545
    # 3.6.5: before they are referenced)
    zones_ical = b"".join(_vtimezone(z, min(ys), max(ys)) for z, ys in sorted(zones.items()) if z != "UTC")
    at = body.find(b"BEGIN:VEVENT")
    at = at if at >= 0 else body.rindex(b"END:VCALENDAR")
    return body[:at] + zones_ical + body[at:]


def invitation(n: BookingNotice, organizer: str, link_base: str = "") -> tuple[str, bytes]:
    """(METHOD, the iCalendar object) of a booking email: REQUEST for a confirmation or a move, CANCEL
    for a cancellation."""
    cancelled = n.kind == "cancelled"
    method = "CANCEL" if cancelled else "REQUEST"
    years = {n.local_start.year, n.local_end.year}
    event = _event(n, organizer, link_base, cancelled=cancelled)
    return method, _calendar(method, {n.clinic_time_zone: years}, [event])


def feed(bookings: Iterable[BookingNotice], organizer: str, link_base: str = "", locale: str = "en") -> bytes:
    """An owner's feed: their bookings as published events (cancelled ones marked so)."""
    events: list[Event] = []
    zones: dict[str, set[int]] = {}
    for n in bookings:
        events.append(_event(n, organizer, link_base, cancelled=n.kind == "cancelled"))
        zones.setdefault(n.clinic_time_zone, set()).update({n.local_start.year, n.local_end.year})
    return _calendar("PUBLISH", zones, events, phrase(locale, "calendar_name"))
