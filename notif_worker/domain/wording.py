"""What the owner reads, in their language: the locale chosen for a notice (the owner's, else the
clinic's, else English), the phrases of every message per locale (en, de, fr, es), and dates, times
and money formatted for that locale with Babel (CLDR data).  Times are always the clinic's local time
with the zone's name, so the email, the calendar event and the push show the same instant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel.core import parse_locale
from babel.dates import format_date, format_skeleton, format_time, get_timezone_name
from babel.numbers import format_currency, get_currency_precision

from notif_worker.domain.notices import BookingNotice

DEFAULT_LOCALE = "en"

# The phrases of every message, per language.  Placeholders: {service} {pet} {clinic} {name} {at}
# {when} {amount} {reason} {by} {outcome} {provider}.  The ``*_provider`` variants are used when the
# booking has an assigned provider (a vet, a groomer); a capacity-only booking reads as before.
# Every locale has every key (a unit test holds them equal).
PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "hello": "Hello {name},",
        "hello_anonymous": "Hello there,",
        "clinic": "Clinic",
        "service": "Service",
        "pet": "Pet",
        "when": "When",
        "was": "Was",
        "reference": "Reference",
        "paid": "Paid",
        "where": "Where",
        "booking_id": "Booking id",
        "see_you": "See you soon,",
        "via": "{clinic} via PetPro",
        "confirmed_heading": "Your booking is confirmed",
        "confirmed_subject": "Booking confirmed: {service} for {pet} on {at}",
        "confirmed_intro": "your booking is confirmed.",
        "cancelled_subject": "Booking cancelled: {service} for {pet}",
        "cancelled_by_you": "your booking was cancelled by you.",
        "cancelled_by_clinic": "your booking was cancelled by the clinic.",
        "refund": "We refund {amount} to your card.",
        "no_refund": "Under the clinic's cancellation policy, nothing is refunded.",
        "reason": "Reason: {reason}",
        "moved_subject": "Booking moved: {service} for {pet} on {at}",
        "moved_intro": "your booking has a new time.",
        "reminder_subject": "Reminder: {service} for {pet} on {at}",
        "reminder_intro": "a reminder of your upcoming visit.",
        "completed_subject": "Visit completed: {service} for {pet}",
        "completed_intro": "the clinic marked your visit completed.",
        "no_show_subject": "Visit recorded as missed (no-show): {service} for {pet}",
        "no_show_intro": "the clinic marked your visit recorded as missed (no-show).",
        "push_confirmed": "Booking confirmed: {service}",
        "push_cancelled": "Booking cancelled: {service}",
        "push_moved": "Booking moved: {service}",
        "push_reminder": "Reminder: {service} for {pet}",
        "push_completed": "Visit completed: {service}",
        "push_no_show": "Visit missed: {service}",
        "push_body": "{pet} at {clinic}, {at}",
        "push_body_moved": "{pet} at {clinic}, now {at}",
        "push_body_reminder": "{clinic}, {at}",
        "sms_stop": "Reply STOP to opt out.",
        "sms_code": "Your PetPro code: {code}. It expires in 10 minutes.",
        "push_refund": "refund {amount}",
        "push_no_refund": "no refund",
        "event_summary": "{service} for {pet} at {clinic}",
        "calendar_name": "PetPro bookings",
        "service_with_provider": "{service} with {provider}",
        "push_body_provider": "{pet} with {provider} at {clinic}, {at}",
        "push_body_moved_provider": "{pet} with {provider} at {clinic}, now {at}",
        "push_body_reminder_provider": "With {provider} at {clinic}, {at}",
    },
    "de": {
        "hello": "Hallo {name},",
        "hello_anonymous": "Hallo,",
        "clinic": "Praxis",
        "service": "Leistung",
        "pet": "Tier",
        "when": "Wann",
        "was": "Bisher",
        "reference": "Referenz",
        "paid": "Bezahlt",
        "where": "Wo",
        "booking_id": "Buchungsnummer",
        "see_you": "Bis bald,",
        "via": "{clinic} über PetPro",
        "confirmed_heading": "Ihre Buchung ist bestätigt",
        "confirmed_subject": "Buchung bestätigt: {service} für {pet} am {at}",
        "confirmed_intro": "Ihre Buchung ist bestätigt.",
        "cancelled_subject": "Buchung storniert: {service} für {pet}",
        "cancelled_by_you": "Sie haben Ihre Buchung storniert.",
        "cancelled_by_clinic": "die Praxis hat Ihre Buchung storniert.",
        "refund": "Wir erstatten {amount} auf Ihre Karte.",
        "no_refund": "Nach den Stornobedingungen der Praxis wird nichts erstattet.",
        "reason": "Grund: {reason}",
        "moved_subject": "Buchung verschoben: {service} für {pet} am {at}",
        "moved_intro": "Ihre Buchung hat einen neuen Termin.",
        "reminder_subject": "Erinnerung: {service} für {pet} am {at}",
        "reminder_intro": "eine Erinnerung an Ihren bevorstehenden Besuch.",
        "completed_subject": "Besuch abgeschlossen: {service} für {pet}",
        "completed_intro": "die Praxis hat Ihren Besuch als abgeschlossen vermerkt.",
        "no_show_subject": "Besuch versäumt: {service} für {pet}",
        "no_show_intro": "die Praxis hat Ihren Besuch als versäumt vermerkt.",
        "push_confirmed": "Buchung bestätigt: {service}",
        "push_cancelled": "Buchung storniert: {service}",
        "push_moved": "Buchung verschoben: {service}",
        "push_reminder": "Erinnerung: {service} für {pet}",
        "push_completed": "Besuch abgeschlossen: {service}",
        "push_no_show": "Besuch versäumt: {service}",
        "push_body": "{pet} bei {clinic}, {at}",
        "push_body_moved": "{pet} bei {clinic}, jetzt {at}",
        "push_body_reminder": "{clinic}, {at}",
        "sms_stop": "Antworten Sie STOP zum Abmelden.",
        "sms_code": "Ihr PetPro-Code: {code}. Er läuft in 10 Minuten ab.",
        "push_refund": "Erstattung {amount}",
        "push_no_refund": "keine Erstattung",
        "event_summary": "{service} für {pet} bei {clinic}",
        "calendar_name": "PetPro-Buchungen",
        "service_with_provider": "{service} bei {provider}",
        "push_body_provider": "{pet} bei {provider}, {clinic}, {at}",
        "push_body_moved_provider": "{pet} bei {provider}, {clinic}, jetzt {at}",
        "push_body_reminder_provider": "Bei {provider}, {clinic}, {at}",
    },
    "fr": {
        "hello": "Bonjour {name},",
        "hello_anonymous": "Bonjour,",
        "clinic": "Clinique",
        "service": "Prestation",
        "pet": "Animal",
        "when": "Quand",
        "was": "Avant",
        "reference": "Référence",
        "paid": "Payé",
        "where": "Où",
        "booking_id": "Numéro de réservation",
        "see_you": "À bientôt,",
        "via": "{clinic} via PetPro",
        "confirmed_heading": "Votre réservation est confirmée",
        "confirmed_subject": "Réservation confirmée : {service} pour {pet} le {at}",
        "confirmed_intro": "votre réservation est confirmée.",
        "cancelled_subject": "Réservation annulée : {service} pour {pet}",
        "cancelled_by_you": "vous avez annulé votre réservation.",
        "cancelled_by_clinic": "la clinique a annulé votre réservation.",
        "refund": "Nous remboursons {amount} sur votre carte.",
        "no_refund": "Selon les conditions d'annulation de la clinique, rien n'est remboursé.",
        "reason": "Motif : {reason}",
        "moved_subject": "Réservation déplacée : {service} pour {pet} le {at}",
        "moved_intro": "votre réservation a un nouvel horaire.",
        "reminder_subject": "Rappel : {service} pour {pet} le {at}",
        "reminder_intro": "un rappel de votre prochaine visite.",
        "completed_subject": "Visite effectuée : {service} pour {pet}",
        "completed_intro": "la clinique a noté votre visite comme effectuée.",
        "no_show_subject": "Visite manquée : {service} pour {pet}",
        "no_show_intro": "la clinique a noté votre visite comme manquée.",
        "push_confirmed": "Réservation confirmée : {service}",
        "push_cancelled": "Réservation annulée : {service}",
        "push_moved": "Réservation déplacée : {service}",
        "push_reminder": "Rappel : {service} pour {pet}",
        "push_completed": "Visite effectuée : {service}",
        "push_no_show": "Visite manquée : {service}",
        "push_body": "{pet} chez {clinic}, {at}",
        "push_body_moved": "{pet} chez {clinic}, désormais {at}",
        "push_body_reminder": "{clinic}, {at}",
        "sms_stop": "Répondez STOP pour vous désabonner.",
        "sms_code": "Votre code PetPro : {code}. Il expire dans 10 minutes.",
        "push_refund": "remboursement {amount}",
        "push_no_refund": "aucun remboursement",
        "event_summary": "{service} pour {pet} chez {clinic}",
        "calendar_name": "Réservations PetPro",
        "service_with_provider": "{service} avec {provider}",
        "push_body_provider": "{pet} avec {provider} chez {clinic}, {at}",
        "push_body_moved_provider": "{pet} avec {provider} chez {clinic}, désormais {at}",
        "push_body_reminder_provider": "Avec {provider} chez {clinic}, {at}",
    },
    "es": {
        "hello": "Hola {name}:",
        "hello_anonymous": "Hola:",
        "clinic": "Clínica",
        "service": "Servicio",
        "pet": "Mascota",
        "when": "Cuándo",
        "was": "Antes",
        "reference": "Referencia",
        "paid": "Pagado",
        "where": "Dónde",
        "booking_id": "Número de reserva",
        "see_you": "¡Hasta pronto!",
        "via": "{clinic} a través de PetPro",
        "confirmed_heading": "Tu reserva está confirmada",
        "confirmed_subject": "Reserva confirmada: {service} para {pet} el {at}",
        "confirmed_intro": "tu reserva está confirmada.",
        "cancelled_subject": "Reserva cancelada: {service} para {pet}",
        "cancelled_by_you": "has cancelado tu reserva.",
        "cancelled_by_clinic": "la clínica ha cancelado tu reserva.",
        "refund": "Te devolvemos {amount} a tu tarjeta.",
        "no_refund": "Según la política de cancelación de la clínica, no se reembolsa nada.",
        "reason": "Motivo: {reason}",
        "moved_subject": "Reserva cambiada: {service} para {pet} el {at}",
        "moved_intro": "tu reserva tiene una nueva hora.",
        "reminder_subject": "Recordatorio: {service} para {pet} el {at}",
        "reminder_intro": "un recordatorio de tu próxima visita.",
        "completed_subject": "Visita realizada: {service} para {pet}",
        "completed_intro": "la clínica ha marcado tu visita como realizada.",
        "no_show_subject": "Visita perdida: {service} para {pet}",
        "no_show_intro": "la clínica ha marcado tu visita como no presentada.",
        "push_confirmed": "Reserva confirmada: {service}",
        "push_cancelled": "Reserva cancelada: {service}",
        "push_moved": "Reserva cambiada: {service}",
        "push_reminder": "Recordatorio: {service} para {pet}",
        "push_completed": "Visita realizada: {service}",
        "push_no_show": "Visita perdida: {service}",
        "push_body": "{pet} en {clinic}, {at}",
        "push_body_moved": "{pet} en {clinic}, ahora {at}",
        "push_body_reminder": "{clinic}, {at}",
        "sms_stop": "Responda STOP para darse de baja.",
        "sms_code": "Su código de PetPro: {code}. Caduca en 10 minutos.",
        "push_refund": "reembolso {amount}",
        "push_no_refund": "sin reembolso",
        "event_summary": "{service} para {pet} en {clinic}",
        "calendar_name": "Reservas PetPro",
        "service_with_provider": "{service} con {provider}",
        "push_body_provider": "{pet} con {provider} en {clinic}, {at}",
        "push_body_moved_provider": "{pet} con {provider} en {clinic}, ahora {at}",
        "push_body_reminder_provider": "Con {provider} en {clinic}, {at}",
    },
}
SUPPORTED = tuple(PHRASES)


@lru_cache(maxsize=256)
def _supported(tag: str) -> str | None:
    """The supported language of a BCP 47 tag ("de-AT" → "de", "pt-BR" → None)."""
    try:  # the tag's syntax alone: the image carries CLDR data only for the languages we speak
        language = parse_locale(tag.replace("-", "_"))[0].lower()
    except (ValueError, TypeError):
        return None
    return language if language in PHRASES else None


def locale_of(owner_locale: str, clinic_locale: str = "") -> str:
    """The owner's language if we speak it, else the clinic's, else English."""
    for tag in (owner_locale, clinic_locale):
        if tag and (found := _supported(tag.strip())):
            return found
    return DEFAULT_LOCALE


def phrase(locale: str, key: str, **values: str) -> str:
    return PHRASES.get(locale, PHRASES[DEFAULT_LOCALE])[key].format(**values)


def money(minor: int, currency: str, locale: str) -> str:
    """Minor units as the locale writes the amount ("€45.00", "45,00 €"), with the currency's own
    number of decimals (JPY none)."""
    code = currency.upper()
    amount = Decimal(minor).scaleb(-get_currency_precision(code))
    return format_currency(amount, code, locale=locale)


def local(n: BookingNotice, at: datetime) -> datetime:
    return at.astimezone(ZoneInfo(n.clinic_time_zone))


def when(n: BookingNotice, locale: str) -> str:
    """The visit's date, start and end in the clinic's local time with the zone's name and its IANA id:
    "Sunday, March 29, 2026, 10:00 AM - 10:30 AM Central European Summer Time (Europe/Berlin)"."""
    return _when(n.start, n.end, n.clinic_time_zone, locale)


def short_when(n: BookingNotice, at: datetime, locale: str) -> str:
    """A short local time for subjects and pushes: "Sun, Mar 29, 10:00 AM Central European Summer Time"."""
    return _short_when(at, n.clinic_time_zone, locale)


# Babel's formatting is the costly part of a message's words.  Every booking starts at its own instant,
# but a clinic's visits fall on a few days at a few times of day: each piece is formatted once per what
# it depends on (the local day, the local time of day, the zone's name on that day at that offset)
_PIECES: dict[tuple[object, ...], str] = {}
_PIECES_MAX = 8192


def _piece(key: tuple[object, ...], make: Callable[[], str]) -> str:
    found = _PIECES.get(key)
    if found is None:
        if len(_PIECES) >= _PIECES_MAX:
            _PIECES.clear()  # a bounded memo: the next lookups fill it again
        found = _PIECES[key] = make()
    return found


def _date_full(t: datetime, locale: str) -> str:
    return _piece(("date", t.date(), locale), lambda: format_date(t, "full", locale=locale))


def _date_short(t: datetime, locale: str) -> str:
    return _piece(("MMMEd", t.date(), locale), lambda: format_skeleton("MMMEd", t, locale=locale))


def _time_short(t: datetime, locale: str) -> str:
    return _piece(("time", t.hour, t.minute, locale), lambda: format_time(t, "short", locale=locale))


def _zone_name(t: datetime, zone: str, locale: str) -> str:
    return _piece(
        ("zone", zone, t.date(), t.utcoffset(), locale),
        lambda: get_timezone_name(t, width="long", locale=locale),
    )


def _when(start_utc: datetime, end_utc: datetime, zone: str, locale: str) -> str:
    tz = ZoneInfo(zone)
    start, end = start_utc.astimezone(tz), end_utc.astimezone(tz)
    return (
        f"{_date_full(start, locale)}, {_time_short(start, locale)}"
        f" \u2013 {_time_short(end, locale)}"
        f" {_zone_name(start, zone, locale)} ({zone})"
    )


def _short_when(at_utc: datetime, zone: str, locale: str) -> str:
    t = at_utc.astimezone(ZoneInfo(zone))
    return f"{_date_short(t, locale)}, {_time_short(t, locale)} {_zone_name(t, zone, locale)}"


def preload() -> None:
    """Load Babel's CLDR data of every language we speak now rather than inside the first message in
    each (``babel.localedata.load`` unpickles the locale and its parents once per process: ~36 ms per
    language on a quiet box, 5 % of notif_worker's samples over a whole full-flow figure, all of it in
    the first events)."""
    at = datetime(2000, 6, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    for lang in SUPPORTED:
        format_date(at, "full", locale=lang)
        format_skeleton("MMMEd", at, locale=lang)
        format_time(at, "short", locale=lang)
        get_timezone_name(at, width="long", locale=lang)
        format_currency(Decimal(1), "EUR", locale=lang)


def push_message(n: BookingNotice) -> tuple[str, str, dict[str, str]]:
    """Title, body and data of the push (inbox row and device notification), in the owner's language.
    ``data.start_time`` is the visit's start in the clinic's local time (RFC 3339 with its offset)."""
    lang = locale_of(n.owner_locale, n.clinic_locale)
    v = {"service": n.service_name, "pet": n.pet_name, "clinic": n.clinic_name}
    at = short_when(n, n.start, lang)

    def body_of(key: str) -> str:  # "Rex at Happy Paws, …", or "Rex with Dr Weber at Happy Paws, …"
        if n.provider_name:
            return phrase(lang, f"{key}_provider", at=at, provider=n.provider_name, **v)
        return phrase(lang, key, at=at, **v)

    if n.kind == "cancelled":
        title = phrase(lang, "push_cancelled", **v)
        refund = (
            phrase(lang, "push_refund", amount=money(n.refund_minor, n.currency, lang))
            if n.refund_minor
            else phrase(lang, "push_no_refund")
        )
        body = f"{body_of('push_body')} \u2014 {refund}"
    elif n.kind == "rescheduled":
        title, body = phrase(lang, "push_moved", **v), body_of("push_body_moved")
    elif n.kind == "reminder":
        title, body = phrase(lang, "push_reminder", **v), body_of("push_body_reminder")
    elif n.kind in ("completed", "no_show"):
        title, body = phrase(lang, f"push_{n.kind}", **v), body_of("push_body")
    else:
        title, body = phrase(lang, "push_confirmed", **v), body_of("push_body")
    data = {
        "booking_id": n.booking_id,
        "clinic_id": str(n.clinic_id),
        "type": f"booking.{n.kind}",
        "start_time": local(n, n.start).isoformat(),
        "time_zone": n.clinic_time_zone,
    }
    return title, body, data


def service_line(n: BookingNotice, lang: str) -> str:
    """The service, with the provider assigned to the booking if any: "Dental cleaning with Dr Weber"
    ("Zahnreinigung bei Dr Weber"); a capacity-only booking's is the service's name alone."""
    if n.provider_name:
        return phrase(lang, "service_with_provider", service=n.service_name, provider=n.provider_name)
    return n.service_name


def place(n: BookingNotice) -> str:
    """Where in the clinic: its address and the resource items the booking claimed (rooms, tables),
    "Torstraße 1, 10119 Berlin (Dental room)"; empty when neither is known."""
    items = ", ".join(name for _, name, _ in n.resources if name)
    if n.clinic_address and items:
        return f"{n.clinic_address} ({items})"
    return n.clinic_address or items


def facts(n: BookingNotice, lang: str) -> list[tuple[str, str]]:
    """The label/value lines every booking email shows."""
    rows = [
        (phrase(lang, "clinic"), n.clinic_name),
        (phrase(lang, "service"), service_line(n, lang)),
        (phrase(lang, "pet"), n.pet_name),
        (phrase(lang, "when"), when(n, lang)),
    ]
    if where := place(n):
        rows.append((phrase(lang, "where"), where))
    rows.append((phrase(lang, "reference"), n.reference))
    return rows


@dataclass(frozen=True)
class MailContent:
    """A booking email's words, in its locale: the adapter lays them out as text and HTML."""

    locale: str
    subject: str
    hello: str
    intro: str
    rows: tuple[tuple[str, str], ...]  # label, value
    notes: tuple[str, ...] = ()  # paragraphs after the facts (reason, refund)
    footer: tuple[str, ...] = ()  # the sign-off lines


def mail_content(n: BookingNotice) -> MailContent:
    """The words of a booking email: confirmation (with the amount paid), cancellation (with its
    refund), move (with the time before), reminder, outcome."""
    lang = locale_of(n.owner_locale, n.clinic_locale)
    v = {"service": n.service_name, "pet": n.pet_name}
    hello = phrase(lang, "hello", name=n.owner_name) if n.owner_name else phrase(lang, "hello_anonymous")
    rows = facts(n, lang)
    notes: list[str] = []
    footer: tuple[str, ...] = ()
    if n.kind == "cancelled":
        subject = phrase(lang, "cancelled_subject", **v)
        intro = phrase(lang, "cancelled_by_clinic" if n.actor == "CLINIC" else "cancelled_by_you")
        if n.reason:
            notes.append(phrase(lang, "reason", reason=n.reason))
        notes.append(
            phrase(lang, "refund", amount=money(n.refund_minor, n.currency, lang))
            if n.refund_minor
            else phrase(lang, "no_refund")
        )
    elif n.kind == "rescheduled":
        subject = phrase(lang, "moved_subject", at=short_when(n, n.start, lang), **v)
        intro = phrase(lang, "moved_intro")
        if n.previous_start is not None:
            rows.append((phrase(lang, "was"), short_when(n, n.previous_start, lang)))
    elif n.kind == "reminder":
        subject = phrase(lang, "reminder_subject", at=short_when(n, n.start, lang), **v)
        intro = phrase(lang, "reminder_intro")
    elif n.kind in ("completed", "no_show"):
        subject, intro = phrase(lang, f"{n.kind}_subject", **v), phrase(lang, f"{n.kind}_intro")
    else:
        subject = phrase(lang, "confirmed_subject", at=short_when(n, n.start, lang), **v)
        intro = phrase(lang, "confirmed_intro")
        rows.append((phrase(lang, "paid"), money(n.amount_minor, n.currency, lang)))
        notes.append(f"{phrase(lang, 'booking_id')}: {n.booking_id}")
        footer = (phrase(lang, "see_you"), phrase(lang, "via", clinic=n.clinic_name))
    return MailContent(lang, subject, hello, intro, tuple(rows), tuple(notes), footer)


def sms_text(n: BookingNotice) -> str:
    """The text message of an event (a change or a reminder), in the owner's language: the push's title
    and body (the clinic's local time with its zone), and how to opt out."""
    lang = locale_of(n.owner_locale, n.clinic_locale)
    title, body, _ = push_message(n)
    return f"{title} \u2014 {body}. {phrase(lang, 'sms_stop')}"


def sms_code_text(code: str, locale: str) -> str:
    """The verification code's text, in ``locale`` (else English)."""
    return phrase(locale_of(locale), "sms_code", code=code)
