"""notif schema: deliveries (exactly once per event, channel, recipient), clinic feed, inbox, devices."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    func,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from notif_worker.domain import (
    BookingNotice,
    DeviceRow,
    FeedRace,
    FeedRow,
    InboxRow,
    Preferences,
    Recorded,
    Reminder,
    ReminderChange,
    reminder_due,
)
from petpro.db import raw_execute

SCHEMA = "notif"
metadata = MetaData(schema=SCHEMA)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
)
clinic_events = Table(
    "clinic_events",
    metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("cursor", BigInteger, primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
booking_progress = Table(
    "booking_progress",
    metadata,
    Column("booking_id", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
parked_events = Table(
    "parked_events",
    metadata,
    Column("booking_id", String(64), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
reminders = Table(
    "reminders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("booking_id", String(64), nullable=False),
    Column("offset_minutes", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("slot_start", DateTime(timezone=True), nullable=False),
    Column("slot_end", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)
preferences = Table(
    "preferences",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("reminders_email", Boolean, nullable=False, server_default=true()),
    Column("reminders_push", Boolean, nullable=False, server_default=true()),
    Column("changes_email", Boolean, nullable=False, server_default=true()),
    Column("changes_push", Boolean, nullable=False, server_default=true()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
PREFERENCE_FIELDS = ("reminders_email", "reminders_push", "changes_email", "changes_push")
inbox = Table(
    "inbox",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("read_at", DateTime(timezone=True)),
)
devices = Table(
    "devices",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("platform", String(16), nullable=False),
    Column("token", String(4096), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The statements of every event (claims, inbox, feed) run on the psycopg connection under the unit of
# work, as plain SQL: through SQLAlchemy they were ~40 % of the worker's CPU (statement building,
# cache keys, result rows, greenlet hops) for one round trip each.
CLAIM = (
    "INSERT INTO deliveries (event_id, channel, recipient, status) VALUES (%s, %s, %s, 'pending')"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO NOTHING RETURNING id"
)
CLAIMED_STATUS = (
    "SELECT status FROM deliveries WHERE event_id = %s AND channel = %s AND recipient = %s FOR UPDATE"
)
FINISH = (
    "UPDATE deliveries SET status = %(status)s, attempts = attempts + 1, last_error = %(error)s,"
    " delivered_at = CASE WHEN %(ok)s THEN now() END"
    " WHERE event_id = %(event_id)s AND channel = %(channel)s AND recipient = %(recipient)s"
)
ADD_INBOX = (
    "INSERT INTO inbox (id, user_id, event_id, title, body, data, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT ON CONSTRAINT inbox_once DO NOTHING RETURNING id"
)
# the clinic's next cursor unless the event is in the feed already (then no row: nothing to append)
NEXT_CURSOR = (
    "INSERT INTO clinic_cursors (clinic_id, last_cursor)"
    " SELECT %(clinic)s, 1 WHERE NOT EXISTS (SELECT 1 FROM clinic_events WHERE event_id = %(event_id)s)"
    " ON CONFLICT (clinic_id) DO UPDATE SET last_cursor = clinic_cursors.last_cursor + 1"
    " RETURNING last_cursor"
)
ADD_FEED_ROW = (
    "INSERT INTO clinic_events (clinic_id, cursor, event_id, type, payload, occurred_at)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING RETURNING cursor"
)


# The protobuf varint of a cursor (a bigint ``c``), as bytea: the bytes of ClinicEvent's field 1 after
# its tag, so that the stored payload is the encoder's output with that cursor (see record_next).
_VARINT = (
    "(SELECT string_agg(set_byte('\\x00'::bytea, 0, ((({c} >> (7 * i)) & 127)"
    " | CASE WHEN ({c} >> (7 * (i + 1))) > 0 THEN 128 ELSE 0 END)::int), ''::bytea ORDER BY i)"
    " FROM generate_series(0, 9) AS i WHERE i = 0 OR ({c} >> (7 * i)) > 0)"
)
# One event that is its booking's next version, recorded in ONE autocommit statement (one round trip,
# its own transaction): the booking's progress, its parked successor taken, the reminders' change, the
# push (delivery claimed as delivered + its inbox row), the email's claim and the clinic feed row.  The
# clinic's counter row is locked by that statement only (server side, no client round trip while
# it is held), and the feed's order is still commit order: the next event's upsert of the counter waits
# for this statement's commit.  Every write hangs off ``prog``: when the event is not the next version
# (a duplicate, or out of order) the statement writes nothing and returns NULL, and the caller takes the
# transactional path.
_RECORD_HEAD = (
    "WITH prog AS ("
    " INSERT INTO booking_progress AS p (booking_id, version)"
    " SELECT %(booking)s::varchar, %(version)s::bigint"
    " WHERE %(version)s::bigint = 1 OR EXISTS (SELECT 1 FROM booking_progress WHERE booking_id = %(booking)s)"
    " ON CONFLICT (booking_id) DO UPDATE SET version = excluded.version, updated_at = now()"
    " WHERE p.version = excluded.version - 1 RETURNING p.version),"
    " parked AS (DELETE FROM parked_events WHERE booking_id = %(booking)s AND version = %(version)s::bigint + 1"
    " AND EXISTS (SELECT 1 FROM prog) RETURNING topic, payload),"
)
_REMINDERS = {
    "schedule": (
        " rem AS (INSERT INTO reminders (id, booking_id, offset_minutes, due_at, slot_start, slot_end, state, data)"
        " SELECT r.id, %(booking)s, r.off, r.due, %(start)s, %(end)s, r.state, %(rdata)s FROM prog,"
        " unnest(%(r_ids)s::uuid[], %(r_offsets)s::int[], %(r_dues)s::timestamptz[], %(r_states)s::text[])"
        " AS r(id, off, due, state) ON CONFLICT DO NOTHING RETURNING 1),"
    ),
    "move": (
        " rem AS (UPDATE reminders SET slot_start = %(start)s, slot_end = %(end)s,"
        " due_at = %(start)s::timestamptz - offset_minutes * interval '1 minute',"
        " state = CASE WHEN %(start)s::timestamptz - offset_minutes * interval '1 minute' > %(now)s"
        " THEN 'PENDING' ELSE 'DROPPED' END, sent_at = NULL"
        " WHERE booking_id = %(booking)s AND EXISTS (SELECT 1 FROM prog) RETURNING 1),"
    ),
    "drop": (
        " rem AS (UPDATE reminders SET state = 'DROPPED' WHERE booking_id = %(booking)s AND state = 'PENDING'"
        " AND EXISTS (SELECT 1 FROM prog) RETURNING 1),"
    ),
    None: " rem AS (SELECT 1 WHERE false),",
}
_RECORD_TAIL = (
    " push AS (INSERT INTO deliveries (event_id, channel, recipient, status, attempts, delivered_at)"
    " SELECT %(event)s, 'push', %(owner)s, 'delivered', 1, now() FROM prog WHERE %(push)s::boolean"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE SET status = 'delivered',"
    " attempts = deliveries.attempts + 1, last_error = NULL, delivered_at = now()"
    " WHERE deliveries.status <> 'delivered' RETURNING 1),"
    " pushed AS (INSERT INTO inbox (id, user_id, event_id, title, body, data, created_at)"
    " SELECT %(inbox_id)s, %(owner_id)s, %(event)s, %(title)s, %(body)s, %(inbox_data)s, %(inbox_at)s FROM push"
    " ON CONFLICT ON CONSTRAINT inbox_once DO NOTHING RETURNING 1),"
    " email AS (INSERT INTO deliveries (event_id, channel, recipient, status)"
    " SELECT %(event)s, 'email', %(email)s, 'pending' FROM prog WHERE %(want_email)s::boolean"
    " ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE SET status = deliveries.status"
    " WHERE deliveries.status <> 'delivered' RETURNING 1),"
    " cur AS (INSERT INTO clinic_cursors (clinic_id, last_cursor)"
    " SELECT %(clinic)s, 1 FROM prog WHERE NOT EXISTS (SELECT 1 FROM clinic_events WHERE event_id = %(event)s)"
    " ON CONFLICT (clinic_id) DO UPDATE SET last_cursor = clinic_cursors.last_cursor + 1 RETURNING last_cursor),"
    " feed AS (INSERT INTO clinic_events (clinic_id, cursor, event_id, type, payload, occurred_at)"
    " SELECT %(clinic)s, last_cursor, %(event)s, %(type)s, '\\x08'::bytea || "
    + _VARINT.format(c="last_cursor")
    + " || %(feed_tail)s, %(at)s FROM cur"
    " ON CONFLICT (event_id) DO NOTHING RETURNING cursor, payload)"
    # read in this order: the clinic's counter is taken last (PostgreSQL runs a WITH statement's
    # parts as the final query reads them; the ones it does not read run at its end)
    " SELECT (SELECT version FROM prog), (SELECT topic FROM parked), (SELECT payload FROM parked),"
    " (SELECT count(*) FROM rem), (SELECT count(*) FROM pushed), EXISTS (SELECT 1 FROM email),"
    " (SELECT cursor FROM feed), (SELECT payload FROM feed)"
)


def reminder_data(n: BookingNotice) -> dict[str, str]:
    """What a reminder's message needs, stored with it."""
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
    }


RECORD_NEXT = {change: _RECORD_HEAD + rem + _RECORD_TAIL for change, rem in _REMINDERS.items()}


class NotifRepository:
    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.s = session

    async def _one(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> Any:
        row = await (await raw_execute(self.s, sql, params)).fetchone()
        return None if row is None else row[0]

    async def claim_delivery(self, event_id: uuid.UUID, channel: str, recipient: str) -> bool:
        """True when this (event, channel, recipient) still needs delivering (new, or a failed try);
        False when it was already delivered — a redelivered event sends nothing twice."""
        if await self._one(CLAIM, (event_id, channel, recipient)) is not None:
            return True
        return bool(await self._one(CLAIMED_STATUS, (event_id, channel, recipient)) != "delivered")

    async def finish_delivery(
        self, event_id: uuid.UUID, channel: str, recipient: str, *, ok: bool, error: str | None = None
    ) -> None:
        await raw_execute(
            self.s,
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

    async def add_clinic_event(
        self,
        clinic_id: uuid.UUID,
        event_id: uuid.UUID,
        type_: str,
        occurred_at: datetime,
        payload_for: Callable[[int], bytes],
    ) -> FeedRow | None:
        """Append to the clinic's feed with the next per-clinic cursor; None if already there.
        ``payload_for(cursor) -> bytes`` serialises the event with its cursor."""
        cursor = await self._one(NEXT_CURSOR, {"clinic": clinic_id, "event_id": event_id})
        if cursor is None:  # already in the feed
            return None
        # the clinic's counter row stays locked until commit: the caller commits right after this
        payload = payload_for(cursor)
        if await self._one(ADD_FEED_ROW, (clinic_id, cursor, event_id, type_, payload, occurred_at)) is None:
            raise FeedRace()  # a concurrent worker won; our cursor rolls back
        return FeedRow(cursor, payload)

    async def record_next(
        self,
        n: BookingNotice,
        *,
        push: InboxRow | None,
        email: bool,
        feed_type: str,
        feed_tail: bytes,
        reminders: ReminderChange,
        now: datetime,
    ) -> Recorded | None:
        """The event recorded in one statement if it is its booking's next version; None (nothing
        written) when it is not.  ``feed_tail``: the clinic event serialised without its cursor (cursor
        0 is not encoded); the statement prepends the cursor's field (``events.cursor_field``)."""
        params: dict[str, Any] = {
            "booking": n.booking_id,
            "version": n.version,
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
        }
        if reminders is not None and reminders[0] == "schedule":
            offsets = reminders[1]
            dues = [reminder_due(n.start, o) for o in offsets]
            params.update(
                r_ids=[uuid.uuid5(n.event_id, f"reminder-{o}") for o in offsets],
                r_offsets=list(offsets),
                r_dues=dues,
                r_states=["PENDING" if d > now else "DROPPED" for d in dues],
                rdata=Json(reminder_data(n)),
            )
        sql = RECORD_NEXT[reminders[0] if reminders is not None else None]
        row = await (await raw_execute(self.s, sql, params, operation="INSERT")).fetchone()
        if row is None or row[0] is None:
            return None
        _, parked_topic, parked_payload, _, _, email_due, cursor, payload = row
        return Recorded(
            email_due=bool(email_due),
            feed=FeedRow(cursor, payload) if cursor is not None else None,
            parked=(parked_topic, parked_payload) if parked_topic is not None else None,
        )

    async def clinic_events_after(self, clinic_id: uuid.UUID, after: int, limit: int) -> list[FeedRow]:
        q = (
            select(clinic_events.c.cursor, clinic_events.c.payload)
            .where(clinic_events.c.clinic_id == clinic_id, clinic_events.c.cursor > after)
            .order_by(clinic_events.c.cursor)
            .limit(limit)
        )
        return [FeedRow(r.cursor, r.payload) for r in await self.s.execute(q)]

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
        rows = await self.s.execute(q.limit(limit))
        return [
            InboxRow(r.id, r.user_id, r.event_id, r.title, r.body, dict(r.data), r.created_at) for r in rows
        ]

    async def upsert_device(self, user_id: uuid.UUID, platform: str, token: str) -> DeviceRow:
        stmt = pg_insert(devices).values(id=uuid.uuid4(), user_id=user_id, platform=platform, token=token)
        stmt = stmt.on_conflict_do_update(
            constraint="devices_once", set_={"platform": stmt.excluded.platform}
        )
        r = (
            await self.s.execute(
                stmt.returning(devices.c.id, devices.c.user_id, devices.c.platform, devices.c.created_at)
            )
        ).one()
        return DeviceRow(r.id, r.user_id, r.platform, r.created_at)

    # -- per-booking order of lifecycle events ------------------------------------------------------
    async def lock_progress(self, booking_id: str) -> int:
        """The last version applied for a booking (0: none), its row locked for this transaction: every
        worker deciding about this booking's events waits here, so park/apply never race."""
        await self.s.execute(
            pg_insert(booking_progress).values(booking_id=booking_id, version=0).on_conflict_do_nothing()
        )
        r = (
            await self.s.execute(
                select(booking_progress.c.version)
                .where(booking_progress.c.booking_id == booking_id)
                .with_for_update()
            )
        ).first()
        return int(r.version) if r else 0

    async def set_progress(self, booking_id: str, version: int) -> None:
        await self.s.execute(
            update(booking_progress)
            .where(booking_progress.c.booking_id == booking_id)
            .values(version=version, updated_at=func.now())
        )

    async def park(self, booking_id: str, version: int, topic: str, payload: bytes) -> None:
        await self.s.execute(
            pg_insert(parked_events)
            .values(booking_id=booking_id, version=version, topic=topic, payload=payload)
            .on_conflict_do_nothing()
        )

    async def take_parked(self, booking_id: str, version: int) -> tuple[str, bytes] | None:
        r = (
            await self.s.execute(
                parked_events.delete()
                .where(parked_events.c.booking_id == booking_id, parked_events.c.version == version)
                .returning(parked_events.c.topic, parked_events.c.payload)
            )
        ).first()
        return (r.topic, r.payload) if r else None

    async def stale_parked(self, parked_before: datetime, limit: int = 50) -> list[tuple[str, int]]:
        """(booking, version) of events parked since before ``parked_before``: their predecessor is
        presumed lost (e.g. a broker that lost acknowledged messages), lowest version per booking."""
        q = text(
            "SELECT DISTINCT ON (booking_id) booking_id, version FROM parked_events"
            " WHERE parked_at < :before ORDER BY booking_id, version LIMIT :limit"
        )
        return [
            (r.booking_id, int(r.version))
            for r in await self.s.execute(q, {"before": parked_before, "limit": limit})
        ]

    # -- reminders ------------------------------------------------------------------------------------
    async def schedule_reminders(self, n: BookingNotice, offsets: tuple[int, ...], now: datetime) -> None:
        data = reminder_data(n)
        for offset in offsets:
            due = reminder_due(n.start, offset)
            await self.s.execute(
                pg_insert(reminders)
                .values(
                    id=uuid.uuid5(n.event_id, f"reminder-{offset}"),
                    booking_id=n.booking_id,
                    offset_minutes=offset,
                    due_at=due,
                    slot_start=n.start,
                    slot_end=n.end,
                    state="PENDING" if due > now else "DROPPED",
                    data=data,
                )
                .on_conflict_do_nothing()
            )

    async def move_reminders(self, booking_id: str, start: datetime, end: datetime, now: datetime) -> None:
        """A reschedule: every reminder follows the new start (again due if its new time is ahead)."""
        await self.s.execute(
            text(
                "UPDATE reminders SET slot_start = :start, slot_end = :end,"
                " due_at = CAST(:start AS timestamptz) - offset_minutes * interval '1 minute',"
                " state = CASE WHEN CAST(:start AS timestamptz) - offset_minutes * interval '1 minute' > :now"
                " THEN 'PENDING' ELSE 'DROPPED' END, sent_at = NULL WHERE booking_id = :booking"
            ),
            {"start": start, "end": end, "now": now, "booking": booking_id},
        )

    async def drop_reminders(self, booking_id: str) -> None:
        await self.s.execute(
            update(reminders)
            .where(reminders.c.booking_id == booking_id, reminders.c.state == "PENDING")
            .values(state="DROPPED")
        )

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
        r = (await self.s.execute(q)).first()
        if r is None:
            return None
        d = r.data
        notice = BookingNotice(
            event_id=r.id,
            occurred_at=now,
            booking_id=r.booking_id,
            clinic_id=uuid.UUID(d["clinic_id"]),
            clinic_name=d["clinic_name"],
            clinic_time_zone=d["tz"],
            service_name=d["service"],
            start=r.slot_start,
            end=r.slot_end,
            pet_name=d["pet"],
            pet_species=d["species"],
            owner_user_id=uuid.UUID(d["owner_user_id"]),
            owner_email=d["email"],
            owner_name=d["name"],
            amount_minor=0,
            currency="",
            kind="reminder",
        )
        return Reminder(r.id, r.booking_id, r.offset_minutes, r.due_at, notice)

    async def mark_reminder_sent(self, reminder_id: uuid.UUID, now: datetime) -> None:
        await self.s.execute(
            update(reminders).where(reminders.c.id == reminder_id).values(state="SENT", sent_at=now)
        )

    # -- preferences ----------------------------------------------------------------------------------
    async def preferences(self, user_id: uuid.UUID) -> Preferences:
        r = (await self.s.execute(select(preferences).where(preferences.c.user_id == user_id))).first()
        return Preferences(*(bool(getattr(r, f)) for f in PREFERENCE_FIELDS)) if r else Preferences()

    async def update_preferences(self, user_id: uuid.UUID, changes: dict[str, bool]) -> Preferences:
        stmt = pg_insert(preferences).values(user_id=user_id, **changes)
        if changes:
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id"],
                set_={**{k: stmt.excluded[k] for k in changes}, "updated_at": func.now()},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        await self.s.execute(stmt)
        return await self.preferences(user_id)
