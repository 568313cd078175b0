"""The NotifRepository port on PostgreSQL: an event recorded in one statement (its booking's order,
parking, reminders, push and the owner's devices' claims, the email's claim, the owner's calendar, the
clinic feed row), the feed and inbox reads, devices, reminders claimed with FOR UPDATE SKIP LOCKED
(deferred past quiet hours), clinics' quiet hours, preferences, calendar feed tokens."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from notif_worker.adapters.codecs import scrub_clinic_event
from notif_worker.adapters.tables import (
    PREFERENCE_FIELDS,
    calendar_tokens,
    clinic_events,
    clinic_quiet_hours,
    clinic_sms,
    deliveries,
    devices,
    erased_accounts,
    inbox,
    owner_bookings,
    parked_events,
    preferences,
    reminders,
    sms_phones,
)
from notif_worker.domain import (
    BookingNotice,
    Device,
    DeviceRow,
    FeedRow,
    InboxRow,
    Preferences,
    QuietHours,
    Recorded,
    Reminder,
    ReminderChange,
    reminder_due,
)
from notif_worker.domain.sms import ClinicSms, SmsClaim, SmsPhone, StaleText
from petpro.db import raw_execute

# The statements of every event (its record, the email's outcome, the inbox) run on the psycopg
# connection under the unit of work, as plain SQL: through SQLAlchemy they were ~40 % of the worker's
# CPU (statement building, cache keys, result rows, greenlet hops) for one round trip each.
FINISH = (
    "UPDATE deliveries SET status = %(status)s, attempts = attempts + 1, last_error = %(error)s,"
    " delivered_at = CASE WHEN %(ok)s THEN now() END"
    " WHERE event_id = %(event_id)s AND channel = %(channel)s AND recipient = %(recipient)s"
)
PREFERENCES = f"SELECT {', '.join(PREFERENCE_FIELDS)} FROM preferences WHERE user_id = %s"
ADD_INBOX = (
    "INSERT INTO inbox (id, user_id, event_id, title, body, data, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT ON CONSTRAINT inbox_once DO NOTHING RETURNING id"
)

# The protobuf varint of a cursor (a bigint ``c``), as bytea: the bytes of ClinicEvent's field 1 after
# its tag, so that the stored payload is the encoder's output with that cursor (see record).
_VARINT = (
    "(SELECT string_agg(set_byte('\\x00'::bytea, 0, ((({c} >> (7 * i)) & 127)"
    " | CASE WHEN ({c} >> (7 * (i + 1))) > 0 THEN 128 ELSE 0 END)::int), ''::bytea ORDER BY i)"
    " FROM generate_series(0, 9) AS i WHERE i = 0 OR ({c} >> (7 * i)) > 0)"
)
# ONE event, recorded in ONE autocommit statement (one round trip, its own transaction), whatever its
# place in its booking's order.  ``prog`` takes the booking's progress row first, locked (an upsert
# locks the row even when its WHERE leaves it as it is, and it waits for a concurrent insert of the
# same booking), and returns the version applied after it, ``r``, for event version ``v``:
#   r = v   the event is the booking's next version (the row moved from v - 1 to v), or a copy of the
#           last one applied: everything below is idempotent, so a copy changes nothing
#   r > v   a copy of an older version: only what may still be missing (a push or an email whose
#           delivery failed, the feed row) is done; the reminders are not touched
#   r < v   an earlier version is still on its way: the event is parked (its topic and payload) and
#           nothing else is written; the one before it takes it when applied
# The applied event takes its parked successor (``parked``), changes the reminders, claims the push as
# delivered and writes its inbox row, claims the email (a new claim, or one whose send failed) and
# appends the clinic feed row with the clinic's next cursor.  The clinic's counter row is locked by
# this statement only (server side, no client round trip while it is held), so the feed's order is
# commit order: the next event's upsert of the counter waits for this statement's commit.
_RECORD_HEAD = (
    "WITH prog AS ("
    " INSERT INTO booking_progress AS p (booking_id, version)"
    " VALUES (%(booking)s, CASE WHEN %(version)s::bigint = 1 THEN 1 ELSE 0 END)"
    " ON CONFLICT (booking_id) DO UPDATE SET"
    " version = CASE WHEN p.version = %(version)s::bigint - 1 THEN %(version)s::bigint ELSE p.version END,"
    " updated_at = CASE WHEN p.version = %(version)s::bigint - 1 THEN now() ELSE p.updated_at END"
    " RETURNING p.version),"
    " parked AS (DELETE FROM parked_events WHERE booking_id = %(booking)s AND version = %(version)s::bigint + 1"
    " AND EXISTS (SELECT 1 FROM prog WHERE version = %(version)s::bigint) RETURNING topic, payload),"
    " park AS (INSERT INTO parked_events (booking_id, version, topic, payload, parked_at)"
    " SELECT %(booking)s, %(version)s, %(topic)s, %(payload)s, %(now)s FROM prog"
    " WHERE version < %(version)s::bigint ON CONFLICT DO NOTHING RETURNING 1),"
)
_APPLIED = "EXISTS (SELECT 1 FROM prog WHERE version = %(version)s::bigint)"
_REMINDERS = {
    "schedule": (
        " rem AS (INSERT INTO reminders (id, booking_id, offset_minutes, due_at, slot_start, slot_end, state, data)"
        " SELECT r.id, %(booking)s, r.off, r.due, %(start)s, %(end)s, r.state, %(rdata)s FROM"
        " unnest(%(r_ids)s::uuid[], %(r_offsets)s::int[], %(r_dues)s::timestamptz[], %(r_states)s::text[])"
        f" AS r(id, off, due, state) WHERE {_APPLIED} ON CONFLICT DO NOTHING RETURNING 1),"
    ),
    # a copy of the reschedule finds the reminders at its time already: it changes nothing (a reminder
    # sent for the new time is not made due again).  A move keeps what the message says (the provider
    # and rooms of a staff move) in the reminder's data; a move to another vet at the same time changes
    # only that (each SET reads the row as it was)
    "move": (
        " rem AS (UPDATE reminders SET slot_start = %(start)s, slot_end = %(end)s, data = %(rdata)s,"
        " due_at = CASE WHEN slot_start IS DISTINCT FROM %(start)s::timestamptz"
        " THEN %(start)s::timestamptz - offset_minutes * interval '1 minute' ELSE due_at END,"
        " state = CASE WHEN slot_start IS NOT DISTINCT FROM %(start)s::timestamptz THEN state"
        " WHEN %(start)s::timestamptz - offset_minutes * interval '1 minute' > %(now)s"
        " THEN 'PENDING' ELSE 'DROPPED' END,"
        " sent_at = CASE WHEN slot_start IS DISTINCT FROM %(start)s::timestamptz THEN NULL ELSE sent_at END"
        " WHERE booking_id = %(booking)s AND (slot_start IS DISTINCT FROM %(start)s::timestamptz"
        " OR data::jsonb IS DISTINCT FROM %(rdata)s::jsonb)"
        f" AND {_APPLIED} RETURNING 1),"
    ),
    "drop": (
        " rem AS (UPDATE reminders SET state = 'DROPPED' WHERE booking_id = %(booking)s AND state = 'PENDING'"
        f" AND {_APPLIED} RETURNING 1),"
    ),
    None: " rem AS (SELECT 1 WHERE false),",
}
# one delivery outside an event's recording (a staff payment link): new, or its last send failed
CLAIM = (
    "INSERT INTO deliveries (event_id, channel, recipient, status)"
    " VALUES (%(event_id)s, %(channel)s, %(recipient)s, 'pending')"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE SET status = 'pending'"
    " WHERE deliveries.status = 'failed' RETURNING 1"
)
# the deliveries and the feed row: for the applied event and for a copy of an older one (whatever of
# it is still missing), never for a parked one
_RECORD_TAIL = (
    " done AS (SELECT 1 FROM prog WHERE version >= %(version)s::bigint),"
    " push AS (INSERT INTO deliveries (event_id, channel, recipient, status, attempts, delivered_at)"
    " SELECT %(event)s, 'push', %(owner)s, 'delivered', 1, now() FROM done WHERE %(push)s::boolean"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE SET status = 'delivered',"
    " attempts = deliveries.attempts + 1, last_error = NULL, delivered_at = now()"
    " WHERE deliveries.status <> 'delivered' RETURNING 1),"
    " pushed AS (INSERT INTO inbox (id, user_id, event_id, title, body, data, created_at)"
    " SELECT %(inbox_id)s, %(owner_id)s, %(event)s, %(title)s, %(body)s, %(inbox_data)s, %(inbox_at)s FROM push"
    " ON CONFLICT ON CONSTRAINT inbox_once DO NOTHING RETURNING 1),"
    " email AS (INSERT INTO deliveries (event_id, channel, recipient, status)"
    " SELECT %(event)s, 'email', %(email)s, 'pending' FROM done WHERE %(want_email)s::boolean"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE SET status = deliveries.status"
    " WHERE deliveries.status <> 'delivered' RETURNING 1),"
    # the owner's devices: one delivery claimed per device (new, or one whose send failed)
    " devs AS (INSERT INTO deliveries (event_id, channel, recipient, status)"
    " SELECT %(event)s, 'device', d.id::text, 'pending' FROM devices d, done"
    " WHERE d.user_id = %(owner_id)s AND %(push)s::boolean"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE SET status = deliveries.status"
    " WHERE deliveries.status <> 'delivered' RETURNING recipient),"
    # the owner's calendar: the booking as this event leaves it (never an older version over a newer)
    " cal AS (INSERT INTO owner_bookings AS b (booking_id, owner_user_id, version, kind, slot_start, slot_end, data)"
    f" SELECT %(booking)s, %(owner_id)s, %(version)s, %(kind)s, %(start)s, %(end)s, %(bdata)s WHERE {_APPLIED}"
    " ON CONFLICT (booking_id) DO UPDATE SET version = excluded.version, kind = excluded.kind,"
    " slot_start = excluded.slot_start, slot_end = excluded.slot_end, data = excluded.data, updated_at = now()"
    " WHERE b.version < excluded.version RETURNING 1),"
    " cur AS (INSERT INTO clinic_cursors (clinic_id, last_cursor)"
    " SELECT %(clinic)s, 1 FROM done WHERE NOT EXISTS (SELECT 1 FROM clinic_events WHERE event_id = %(event)s)"
    " ON CONFLICT (clinic_id) DO UPDATE SET last_cursor = clinic_cursors.last_cursor + 1 RETURNING last_cursor),"
    " feed AS (INSERT INTO clinic_events (clinic_id, cursor, event_id, type, payload, occurred_at)"
    " SELECT %(clinic)s, last_cursor, %(event)s, %(type)s, '\\x08'::bytea || "
    + _VARINT.format(c="last_cursor")
    + " || %(feed_tail)s, %(at)s FROM cur"
    " ON CONFLICT (event_id) DO NOTHING RETURNING cursor, payload)"
    # read in this order: the clinic's counter is taken last (PostgreSQL runs a WITH statement's
    # parts as the final query reads them; the ones it does not read run at its end)
    " SELECT (SELECT version FROM prog), (SELECT topic FROM parked), (SELECT payload FROM parked),"
    " (SELECT count(*) FROM rem), (SELECT count(*) FROM park), (SELECT count(*) FROM pushed),"
    " EXISTS (SELECT 1 FROM email), (SELECT cursor FROM feed), (SELECT payload FROM feed),"
    " (SELECT count(*) FROM cal),"
    " (SELECT array_agg(ARRAY[d.id::text, d.platform, d.token] ORDER BY d.created_at) FROM devs"
    " JOIN devices d ON d.id::text = devs.recipient)"
)


def _compact(sql: str) -> str:
    """The statement without the spaces around punctuation (and ``::int8`` for ``::bigint``): psycopg
    caches the parsing of a statement's placeholders only up to 4,096 bytes
    (``psycopg._queries.MAX_CACHED_STATEMENT_LENGTH``), and a booking.created event's statement, at
    4,326, was parsed again on every event (0.55 ms, 5-8 % of notif_worker's CPU in the full flow).
    Its string literals are left exactly as they are (checked)."""
    out = re.sub(r"\s*([,=()<>+*-])\s*", r"\1", sql).replace("::bigint", "::int8")
    if re.findall(r"'[^']*'", out) != re.findall(r"'[^']*'", sql):
        raise ValueError("compacting changed a string literal")
    return out


RECORD = {change: _compact(_RECORD_HEAD + rem + _RECORD_TAIL) for change, rem in _REMINDERS.items()}

# a parked event taken out to be applied (its predecessor presumed lost, or applied meanwhile): the
# booking's progress moves to just before it (never back), and the parked row goes, in one statement;
# a version that is not parked changes nothing
RELEASE_PARKED = (
    "WITH prog AS (UPDATE booking_progress SET version = GREATEST(version, %(version)s::bigint - 1),"
    " updated_at = now() WHERE booking_id = %(booking)s AND EXISTS (SELECT 1 FROM parked_events"
    " WHERE booking_id = %(booking)s AND version = %(version)s) RETURNING version)"
    " DELETE FROM parked_events WHERE booking_id = %(booking)s AND version = %(version)s"
    " AND EXISTS (SELECT 1 FROM prog) RETURNING topic, payload"
)
# parked events to apply now: waiting since before the cut-off (the predecessor presumed lost), or
# whose predecessor is applied (it came while this one was being parked), lowest version per booking
PARKED_DUE = (
    "SELECT DISTINCT ON (e.booking_id) e.booking_id, e.version FROM parked_events e"
    " LEFT JOIN booking_progress p ON p.booking_id = e.booking_id"
    " WHERE e.parked_at < %(before)s OR e.version <= COALESCE(p.version, 0) + 1"
    " ORDER BY e.booking_id, e.version LIMIT %(limit)s"
)


def reminder_data(n: BookingNotice) -> dict[str, Any]:
    """What a reminder's message needs, stored with it (the assigned provider and resource items too:
    a reminder names the vet as the confirmation did)."""
    return {
        "clinic_id": str(n.clinic_id),
        "clinic_name": n.clinic_name,
        "tz": n.clinic_time_zone,
        "service": n.service_name,
        "pet": n.pet_name,
        "species": n.pet_species,
        "owner_user_id": str(n.owner_user_id),
        "email": n.owner_email,
        "name": n.owner_name,
        "locale": n.owner_locale,
        "clinic_locale": n.clinic_locale,
        "address": n.clinic_address,
        "provider_id": n.provider_id,
        "provider": n.provider_name,
        "resources": [list(r) for r in n.resources],
    }


def booking_data(n: BookingNotice) -> dict[str, Any]:
    """What the calendar feed needs of a booking, stored with it."""
    return {**reminder_data(n), "reason": n.reason}


def notice_from(data: dict[str, Any], **fields: Any) -> BookingNotice:
    """A notice rebuilt from a reminder's or a booking's stored data (rows stored before the
    assignment was kept have no provider: they read as a capacity-only booking)."""
    return BookingNotice(
        clinic_id=uuid.UUID(data["clinic_id"]),
        clinic_name=data["clinic_name"],
        clinic_time_zone=data["tz"],
        service_name=data["service"],
        pet_name=data["pet"],
        pet_species=data["species"],
        owner_user_id=uuid.UUID(data["owner_user_id"]),
        owner_email=data["email"],
        owner_name=data["name"],
        owner_locale=data.get("locale", ""),
        clinic_locale=data.get("clinic_locale", ""),
        clinic_address=data.get("address", ""),
        provider_id=data.get("provider_id", ""),
        provider_name=data.get("provider", ""),
        resources=tuple((str(i), str(name), str(kind)) for i, name, kind in data.get("resources", ())),
        amount_minor=0,
        currency="",
        **fields,
    )


def _array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal (``{a,b}``) of values whose text needs no quoting (uuids, integers,
    ISO 8601 times, plain words), for a parameter the statement casts (``::uuid[]``): a string is
    dumped as it is, where psycopg's list dumper looked at every element's type on every event (~5 %
    of the worker's CPU in the notifier figure for the reminders' four arrays)."""
    return "{" + ",".join(map(str, values)) + "}"


class NotifRepository:
    """On a unit of work's session, a reader's connection, or a bare psycopg connection in autocommit
    mode (``Database.statements``: only the plain-SQL methods, ``raw_execute``, work on that one)."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.session = session

    async def _one(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> Any:
        row = await (await raw_execute(self.session, sql, params)).fetchone()
        return None if row is None else row[0]

    async def record(
        self,
        n: BookingNotice,
        *,
        push: InboxRow | None,
        email: bool,
        feed_type: str,
        feed_tail: bytes,
        reminders: ReminderChange,
        park: tuple[str, bytes],
        now: datetime,
    ) -> Recorded:
        """The event in one statement (see ``_RECORD_HEAD``).  ``feed_tail``: the clinic event serialised
        without its cursor (cursor 0 is not encoded); the statement prepends the cursor's field
        (``codecs.cursor_field``).  ``park``: the event's topic and payload, kept if it must wait."""
        params: dict[str, Any] = {
            "booking": n.booking_id,
            "version": n.version,
            "topic": park[0],
            "payload": park[1],
            "event": n.event_id,
            "owner": str(n.owner_user_id),
            "push": push is not None,
            "inbox_id": push.id if push else None,
            "owner_id": n.owner_user_id,
            "title": push.title if push else None,
            "body": push.body if push else None,
            "inbox_data": Json(push.data) if push else None,
            "inbox_at": push.created_at if push else None,
            "email": n.owner_email,
            "want_email": email,
            "clinic": n.clinic_id,
            "type": feed_type,
            "feed_tail": feed_tail,
            "at": n.occurred_at,
            "start": n.start,
            "end": n.end,
            "now": now,
            "kind": n.kind,
            "bdata": Json(booking_data(n)),
        }
        if reminders is not None and reminders[0] == "move":
            params["rdata"] = Json(reminder_data(n))
        if reminders is not None and reminders[0] == "schedule":
            offsets = reminders[1]
            dues = [reminder_due(n.start, o) for o in offsets]
            params.update(
                r_ids=_array(uuid.uuid5(n.event_id, f"reminder-{o}") for o in offsets),
                r_offsets=_array(offsets),
                r_dues=_array(d.isoformat() for d in dues),
                r_states=_array("PENDING" if d > now else "DROPPED" for d in dues),
                rdata=Json(reminder_data(n)),
            )
        sql = RECORD[reminders[0] if reminders is not None else None]
        row = await (await raw_execute(self.session, sql, params, operation="INSERT")).fetchone()
        applied, parked_topic, parked_payload, _, _, _, email_due, cursor, payload, _, devs = row
        return Recorded(
            outcome="applied" if applied == n.version else "copy" if applied > n.version else "parked",
            email_due=bool(email_due),
            feed=FeedRow(cursor, payload) if cursor is not None else None,
            parked=(parked_topic, parked_payload) if parked_topic is not None else None,
            devices=tuple(Device(uuid.UUID(d), p, t) for d, p, t in devs or ()),
        )

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        cur = await raw_execute(
            self.session,
            CLAIM,
            params={"event_id": event_id, "channel": channel, "recipient": recipient},
        )
        return await cur.fetchone() is not None

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None:
        await raw_execute(
            self.session,
            FINISH,
            params={
                "status": "delivered" if ok else "failed",
                "error": error,
                "ok": ok,
                "event_id": event_id,
                "channel": channel,
                "recipient": recipient,
            },
        )

    # -- parked events --------------------------------------------------------------------------------
    async def parked_due(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]:
        """(booking, version) of parked events to apply now: parked since before ``parked_before`` (their
        predecessor presumed lost), or whose predecessor has been applied; lowest version per booking."""
        cur = await raw_execute(self.session, PARKED_DUE, {"before": parked_before, "limit": limit})
        return [(booking_id, int(version)) for booking_id, version in await cur.fetchall()]

    async def release_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None:
        """Take a parked event out (topic, payload), the booking's progress moved to just before it;
        None when it is gone (another replica took it)."""
        cur = await raw_execute(self.session, RELEASE_PARKED, {"booking": booking_id, "version": version})
        row = await cur.fetchone()
        return (row[0], bytes(row[1])) if row else None

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        q = (
            select(clinic_events.c.cursor, clinic_events.c.payload)
            .where(clinic_events.c.clinic_id == clinic_id, clinic_events.c.cursor > after)
            .order_by(clinic_events.c.cursor)
            .limit(limit)
        )
        return [FeedRow(r.cursor, r.payload) for r in await self.session.execute(q)]

    async def add_inbox(self, row: InboxRow) -> bool:
        return (
            await self._one(
                ADD_INBOX,
                (row.id, row.user_id, row.event_id, row.title, row.body, Json(row.data), row.created_at),
            )
            is not None
        )

    async def list_inbox(
        self, user_id: uuid.UUID, after: tuple[str, ...] | None, limit: int
    ) -> list[InboxRow]:
        q = (
            select(inbox)
            .where(inbox.c.user_id == user_id)
            .order_by(inbox.c.created_at.desc(), inbox.c.id.desc())
        )
        if after:
            q = q.where(
                func.row(inbox.c.created_at, inbox.c.id)
                < func.row(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
            )
        rows = await self.session.execute(q.limit(limit))
        return [
            InboxRow(r.id, r.user_id, r.event_id, r.title, r.body, dict(r.data), r.created_at) for r in rows
        ]

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        # a token belongs to the owner who registered it last (a phone that changed hands)
        await self.session.execute(
            delete(devices).where(devices.c.token == token, devices.c.user_id != user_id)
        )
        stmt = pg_insert(devices).values(id=uuid.uuid4(), user_id=user_id, platform=platform, token=token)
        stmt = stmt.on_conflict_do_update(
            constraint="devices_once", set_={"platform": stmt.excluded.platform}
        )
        r = (
            await self.session.execute(
                stmt.returning(devices.c.id, devices.c.user_id, devices.c.platform, devices.c.created_at)
            )
        ).one()
        return DeviceRow(r.id, r.user_id, r.platform, r.created_at)

    # -- reminders ------------------------------------------------------------------------------------
    async def claim_due_reminder(self, now: datetime) -> Reminder | None:
        """The most overdue pending reminder of a booking not started yet, locked (SKIP LOCKED: another
        replica takes the next one) until this transaction ends."""
        q = (
            select(reminders)
            .where(reminders.c.state == "PENDING", reminders.c.due_at <= now, reminders.c.slot_start > now)
            .order_by(reminders.c.due_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        r = (await self.session.execute(q)).first()
        if r is None:
            return None
        notice = notice_from(
            r.data,
            event_id=r.id,
            occurred_at=now,
            booking_id=r.booking_id,
            start=r.slot_start,
            end=r.slot_end,
            kind="reminder",
        )
        return Reminder(r.id, r.booking_id, r.offset_minutes, r.due_at, notice)

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(reminders).where(reminders.c.id == reminder_id).values(state="SENT", sent_at=now)
        )

    async def defer_reminder(self, reminder_id: uuid.UUID, due_at: datetime) -> None:
        await self.session.execute(
            update(reminders).where(reminders.c.id == reminder_id).values(due_at=due_at)
        )

    async def drop_reminder(self, reminder_id: uuid.UUID) -> None:
        await self.session.execute(
            update(reminders).where(reminders.c.id == reminder_id).values(state="DROPPED")
        )

    async def quiet_hours(self, clinic_id: uuid.UUID) -> QuietHours | None:
        r = (
            await self.session.execute(
                select(clinic_quiet_hours.c.starts, clinic_quiet_hours.c.ends).where(
                    clinic_quiet_hours.c.clinic_id == clinic_id
                )
            )
        ).first()
        return QuietHours.parse(r.starts, r.ends) if r else None

    async def set_quiet_hours(self, clinic_id: uuid.UUID, quiet: QuietHours) -> None:
        starts, ends = f"{quiet.start:%H:%M}", f"{quiet.end:%H:%M}"
        stmt = pg_insert(clinic_quiet_hours).values(clinic_id=clinic_id, starts=starts, ends=ends)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["clinic_id"], set_={"starts": starts, "ends": ends, "updated_at": func.now()}
            )
        )

    # -- devices ----------------------------------------------------------------------------------------
    async def devices_of(self, user_id: uuid.UUID) -> list[Device]:
        rows = await self.session.execute(
            select(devices.c.id, devices.c.platform, devices.c.token)
            .where(devices.c.user_id == user_id)
            .order_by(devices.c.created_at)
        )
        return [Device(r.id, r.platform, r.token) for r in rows]

    async def remove_device(self, device_id: uuid.UUID) -> bool:
        # plain SQL: an event's step on the statements connection (NotifyHandlers)
        cur = await raw_execute(self.session, "DELETE FROM devices WHERE id = %s", (device_id,))
        return bool(cur.rowcount)

    # -- the calendar feed ------------------------------------------------------------------------------
    async def upcoming_bookings(self, user_id: uuid.UUID, now: datetime, limit: int) -> list[BookingNotice]:
        """The owner's bookings not ended yet and not cancelled, soonest first."""
        rows = await self.session.execute(
            select(owner_bookings)
            .where(
                owner_bookings.c.owner_user_id == user_id,
                owner_bookings.c.slot_end > now,
                owner_bookings.c.kind.in_(("created", "rescheduled")),
            )
            .order_by(owner_bookings.c.slot_start, owner_bookings.c.booking_id)
            .limit(limit)
        )
        return [
            notice_from(
                r.data,
                event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{r.booking_id}/{r.version}"),
                occurred_at=r.updated_at,
                booking_id=r.booking_id,
                start=r.slot_start,
                end=r.slot_end,
                kind=r.kind,
                version=r.version,
            )
            for r in rows
        ]

    async def feed_owner(self, token_hash: bytes) -> uuid.UUID | None:
        r = (
            await self.session.execute(
                select(calendar_tokens.c.user_id).where(calendar_tokens.c.token_hash == token_hash)
            )
        ).first()
        return r.user_id if r else None

    async def create_feed_token(self, user_id: uuid.UUID, token_hash: bytes, now: datetime) -> bool:
        stmt = pg_insert(calendar_tokens).values(user_id=user_id, token_hash=token_hash, created_at=now)
        result = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["user_id"]).returning(calendar_tokens.c.user_id)
        )
        return result.first() is not None

    async def replace_feed_token(self, user_id: uuid.UUID, token_hash: bytes, now: datetime) -> None:
        stmt = pg_insert(calendar_tokens).values(user_id=user_id, token_hash=token_hash, created_at=now)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id"], set_={"token_hash": token_hash, "created_at": now}
            )
        )

    async def revoke_feed_token(self, user_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(calendar_tokens)
            .where(calendar_tokens.c.user_id == user_id)
            .returning(calendar_tokens.c.user_id)
        )
        return result.first() is not None

    # -- preferences ----------------------------------------------------------------------------------
    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        # plain SQL: a lifecycle event's step on the statements connection (NotifyHandlers)
        cur = await raw_execute(self.session, PREFERENCES, (user_id,), operation="SELECT")
        r = await cur.fetchone()
        return Preferences(*(bool(v) for v in r)) if r else Preferences()

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences:
        stmt = pg_insert(preferences).values(user_id=user_id, **changes)
        if changes:
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id"],
                set_={**{k: stmt.excluded[k] for k in changes}, "updated_at": func.now()},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        await self.session.execute(stmt)
        return await self.preferences(user_id)

    # -- SMS --------------------------------------------------------------------------------------------
    async def sms_phone(self, user_id: uuid.UUID) -> SmsPhone | None:
        r = (await self.session.execute(select(sms_phones).where(sms_phones.c.user_id == user_id))).first()
        if r is None:
            return None
        return SmsPhone(
            r.user_id,
            r.phone,
            r.state,
            bytes(r.code_hash),
            r.code_expires_at,
            r.tries_left,
            r.codes_sent,
            r.window_start,
            r.verified_at,
        )

    async def save_sms_phone(self, p: SmsPhone) -> None:
        values = {
            "phone": p.phone,
            "state": p.state,
            "code_hash": p.code_hash,
            "code_expires_at": p.code_expires_at,
            "tries_left": p.tries_left,
            "codes_sent": p.codes_sent,
            "window_start": p.window_start,
            "verified_at": p.verified_at,
        }
        stmt = pg_insert(sms_phones).values(user_id=p.user_id, **values)
        await self.session.execute(
            stmt.on_conflict_do_update(index_elements=["user_id"], set_={**values, "updated_at": func.now()})
        )

    async def set_phone_opted_out(self, phone: str, opted_out: bool) -> int:
        stmt = (
            update(sms_phones)
            .where(
                sms_phones.c.phone == phone,
                sms_phones.c.state == ("VERIFIED" if opted_out else "OPTED_OUT"),
            )
            .values(state="OPTED_OUT" if opted_out else "VERIFIED", updated_at=func.now())
        )
        result = await self.session.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)

    async def clinic_sms(self, clinic_id: uuid.UUID) -> ClinicSms | None:
        r = (
            await self.session.execute(select(clinic_sms).where(clinic_sms.c.clinic_id == clinic_id))
        ).first()
        return ClinicSms(bool(r.enabled), int(r.monthly_cap)) if r else None

    async def set_clinic_sms(self, clinic_id: uuid.UUID, s: ClinicSms) -> None:
        values = {"enabled": s.enabled, "monthly_cap": s.monthly_cap}
        stmt = pg_insert(clinic_sms).values(clinic_id=clinic_id, **values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["clinic_id"], set_={**values, "updated_at": func.now()}
            )
        )

    async def sms_used(self, clinic_id: uuid.UUID, month: str) -> int:
        r = await self._one(
            "SELECT sent FROM sms_usage WHERE clinic_id = %s AND month = %s", (clinic_id, month)
        )
        return int(r or 0)

    async def claim_sms(
        self,
        key: uuid.UUID,
        phone: str,
        body: str,
        clinic_id: uuid.UUID,
        *,
        month: str,
        cap: int,
        owner_limit: int,
        since: datetime,
        now: datetime,
    ) -> SmsClaim:
        inserted = await self._one(
            "INSERT INTO deliveries (event_id, channel, recipient, status, claimed_at, body)"
            " VALUES (%s, 'sms', %s, 'sending', %s, %s)"
            " ON CONFLICT ON CONSTRAINT deliveries_once DO NOTHING RETURNING id",
            (key, phone, now, body),
        )
        if inserted is None:  # claimed before: a failed or unsettled one is the sweep's (it asks first)
            status = await self._one(
                "SELECT status FROM deliveries WHERE event_id = %s AND channel = 'sms' AND recipient = %s",
                (key, phone),
            )
            return "busy" if status in ("sending", "failed") else "done"
        recent = await self._one(
            "SELECT count(*) FROM deliveries WHERE channel = 'sms' AND recipient = %s"
            " AND status IN ('sending', 'delivered') AND claimed_at > %s AND event_id <> %s",
            (phone, since, key),
        )
        refused: SmsClaim | None = None
        if int(recent) >= owner_limit:
            refused = "limited"
        else:
            counted = (
                await self._one(
                    "INSERT INTO sms_usage (clinic_id, month, sent) VALUES (%(c)s, %(m)s, 1)"
                    " ON CONFLICT (clinic_id, month) DO UPDATE SET sent = sms_usage.sent + 1"
                    " WHERE sms_usage.sent < %(cap)s RETURNING sent",
                    {"c": clinic_id, "m": month, "cap": cap},
                )
                if cap > 0
                else None
            )
            if counted is None:
                refused = "capped"
        if refused is not None:
            await self.refuse_delivery(key, "sms", phone, refused)
            return refused
        return "send"

    async def renew_sms_claim(self, key: uuid.UUID, phone: str, held: datetime, now: datetime) -> bool:
        renewed = await self._one(
            "UPDATE deliveries SET status = 'sending', claimed_at = %s"
            " WHERE event_id = %s AND channel = 'sms' AND recipient = %s AND claimed_at = %s"
            " AND status IN ('sending', 'failed') RETURNING id",
            (now, key, phone, held),
        )
        return renewed is not None

    async def sms_outcome_unknown(self, key: uuid.UUID, phone: str, error: str) -> None:
        await raw_execute(
            self.session,
            "UPDATE deliveries SET attempts = attempts + 1, last_error = %s"
            " WHERE event_id = %s AND channel = 'sms' AND recipient = %s AND status = 'sending'",
            (error, key, phone),
        )

    async def stale_texts(self, claimed_before: datetime, limit: int = 20) -> list[StaleText]:
        cur = await raw_execute(
            self.session,
            "SELECT event_id, recipient, body, claimed_at, created_at FROM deliveries"
            " WHERE channel = 'sms' AND status IN ('sending', 'failed') AND claimed_at < %s AND attempts < 5"
            " ORDER BY claimed_at LIMIT %s",
            (claimed_before, limit),
        )
        return [
            StaleText(k, phone, body or "", at, min(first, at))
            for k, phone, body, at, first in await cur.fetchall()
        ]

    async def refuse_delivery(self, event_id: uuid.UUID, channel: str, recipient: str, error: str) -> None:
        await raw_execute(
            self.session,
            "UPDATE deliveries SET status = 'refused', attempts = attempts + 1, last_error = %s"
            " WHERE event_id = %s AND channel = %s AND recipient = %s",
            (error, event_id, channel, recipient),
        )

    # -- a deleted account (account.deleted) and the owner's data export ------------------------------
    async def mark_erasing(self, user_id: uuid.UUID, event_id: uuid.UUID, digests: list[str]) -> None:
        await self.session.execute(
            pg_insert(erased_accounts)
            .values(user_id=user_id, event_id=event_id, email_sha256=digests)
            .on_conflict_do_nothing()
        )

    async def record_erased(self, user_id: uuid.UUID, at: datetime) -> bool:
        """False when the account's erasure was recorded before (or the account was never marked)."""
        done = await self.session.execute(
            update(erased_accounts)
            .where(erased_accounts.c.user_id == user_id, erased_accounts.c.erased_at.is_(None))
            .values(erased_at=at)
            .returning(erased_accounts.c.user_id)
        )
        return done.first() is not None

    async def erased_digests(self, user_id: uuid.UUID) -> list[str] | None:
        """The email digests of an erased account; None when the account was not erased."""
        # plain SQL, asked twice per event (NotifyHandlers): through SQLAlchemy's statement
        # building and result rows it was ~8 % of the worker's CPU
        return await self._one("SELECT email_sha256 FROM erased_accounts WHERE user_id = %s", (user_id,))

    async def erase_user(self, user_id: uuid.UUID, digests: list[str]) -> None:
        """Everything notif holds about the user: inbox, devices, preferences, calendar token, number for
        texts (and its texts' recipient), calendar rows, pending reminders' data and parked events of their bookings deleted or emptied; their
        email deliveries' address replaced; their clinic feed rows without name, email or pet name."""
        booking_ids = [
            r[0]
            for r in await self.session.execute(
                select(owner_bookings.c.booking_id).where(owner_bookings.c.owner_user_id == user_id)
            )
        ]
        booking_ids += [
            r[0]
            for r in await self.session.execute(
                select(func.json_extract_path_text(inbox.c.data, "booking_id")).where(
                    inbox.c.user_id == user_id
                )
            )
            if r[0]
        ]
        booking_ids = sorted(set(booking_ids))
        for table in (inbox, devices):
            await self.session.execute(delete(table).where(table.c.user_id == user_id))
        await self.session.execute(delete(preferences).where(preferences.c.user_id == user_id))
        await self.session.execute(delete(calendar_tokens).where(calendar_tokens.c.user_id == user_id))
        await self.session.execute(delete(owner_bookings).where(owner_bookings.c.owner_user_id == user_id))
        phones = [
            r[0]
            for r in await self.session.execute(
                delete(sms_phones).where(sms_phones.c.user_id == user_id).returning(sms_phones.c.phone)
            )
        ]
        if phones:  # the texts' log keeps no number of theirs
            await self.session.execute(
                update(deliveries)
                .where((deliveries.c.channel == "sms") & deliveries.c.recipient.in_(phones))
                .values(recipient=func.concat("erased:", deliveries.c.id), last_error=None)
            )
        digest = func.encode(func.sha256(func.convert_to(func.lower(deliveries.c.recipient), "UTF8")), "hex")
        await self.session.execute(
            update(deliveries)
            .where(
                ((deliveries.c.channel == "email") & digest.in_(digests))
                | ((deliveries.c.channel == "push") & (deliveries.c.recipient == str(user_id)))
            )
            .values(recipient=func.concat("erased:", deliveries.c.id), last_error=None)
        )
        if not booking_ids:
            return
        await self.session.execute(
            update(reminders)
            .where(reminders.c.booking_id.in_(booking_ids))
            .values(data={}, state=case((reminders.c.state == "PENDING", "DROPPED"), else_=reminders.c.state))
        )
        await self.session.execute(delete(parked_events).where(parked_events.c.booking_id.in_(booking_ids)))
        for booking_id in booking_ids:
            rows = await self.session.execute(
                text(
                    "SELECT clinic_id, cursor, payload FROM clinic_events"
                    " WHERE position(convert_to(:booking, 'UTF8') in payload) > 0"
                ),
                {"booking": booking_id},
            )
            for clinic_id, cursor, payload in rows:
                await self.session.execute(
                    update(clinic_events)
                    .where(clinic_events.c.clinic_id == clinic_id, clinic_events.c.cursor == cursor)
                    .values(payload=scrub_clinic_event(bytes(payload), booking_id))
                )

    async def user_export(self, user_id: uuid.UUID, email: str) -> dict[str, Any]:
        def rows(result: Any) -> list[dict[str, Any]]:
            out = []
            for r in result:
                out.append(
                    {
                        k: (
                            str(v)
                            if isinstance(v, uuid.UUID)
                            else v.isoformat()
                            if isinstance(v, datetime)
                            else v
                        )
                        for k, v in r._mapping.items()
                    }
                )
            return out

        inbox_rows = await self.session.execute(
            select(inbox.c.id, inbox.c.title, inbox.c.body, inbox.c.data, inbox.c.created_at, inbox.c.read_at)
            .where(inbox.c.user_id == user_id)
            .order_by(inbox.c.created_at)
        )
        delivery_rows = await self.session.execute(
            select(
                deliveries.c.event_id,
                deliveries.c.channel,
                deliveries.c.recipient,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.created_at,
                deliveries.c.delivered_at,
            )
            .where(
                (
                    (deliveries.c.channel == "email")
                    & (deliveries.c.recipient == email)
                    & (deliveries.c.recipient != "")
                )
                | ((deliveries.c.channel == "push") & (deliveries.c.recipient == str(user_id)))
                | (
                    (deliveries.c.channel == "device")
                    & deliveries.c.recipient.in_(
                        select(func.cast(devices.c.id, deliveries.c.recipient.type)).where(
                            devices.c.user_id == user_id
                        )
                    )
                )
            )
            .order_by(deliveries.c.created_at, deliveries.c.id)
        )
        device_rows = await self.session.execute(
            select(devices.c.id, devices.c.platform, devices.c.created_at).where(devices.c.user_id == user_id)
        )
        prefs = await self.session.execute(select(preferences).where(preferences.c.user_id == user_id))
        cal = await self.session.execute(
            select(calendar_tokens.c.created_at).where(calendar_tokens.c.user_id == user_id)
        )
        return {
            "inbox": rows(inbox_rows),
            "deliveries": rows(delivery_rows),
            "devices": rows(device_rows),
            "preferences": next(iter(rows(prefs)), None),
            "calendar_feed": next(iter(rows(cal)), None),
        }
