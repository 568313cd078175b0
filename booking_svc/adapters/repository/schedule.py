"""Scheduling queries (docs/design/scheduling.md): providers, their time off, resources, what a service
needs, and the claims of a scheduled hold.

The claims table holds what every active reservation uses (its unit, provider, resource items, pet);
one named partial exclusion constraint per kind refuses an overlap, and a trigger keeps each claim's
``active`` and ``during`` following its reservation in the statement that changes it (confirm, cancel,
expire, fail, move).  A scheduled hold inserts its reservation and all its claims in one statement inside
a savepoint: all or nothing, and a loser learns which constraint refused it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from psycopg.errors import DeadlockDetected, ExclusionViolation, UniqueViolation
from sqlalchemy import CursorResult, Row, any_, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from booking_svc.adapters.repository.rows import (
    Queries,
    booking_from_row,
    hold_params,
    hours_from_json,
    hours_json,
    is_violation,
)
from booking_svc.adapters.tables import (
    bookings,
    provider_time_off,
    providers,
    reservations,
    resource_types,
    resources,
    service_needs,
    service_providers,
)
from booking_svc.domain import (
    Booking,
    Claim,
    ClaimKind,
    ClinicSchedule,
    HoldOptions,
    Provider,
    Reservation,
    Resource,
    ScheduledAttempt,
    ServiceNeed,
    TimeOff,
)
from petpro.db import driver_connection, raw_execute

# a claim's reservation is live at %(now)s (a lapsed hold's claims stay active until it is expired)
LIVE = "(r.state = 'CONFIRMED' OR (r.state = 'HELD' AND r.expires_at > %(now)s))"
MAX_BUFFER = timedelta(minutes=240)  # services.buffer_range: a claim ends at most this after its slot

# the live claims a hold or the availability of a clinic must respect: the clinic's providers and
# resources (and its pets), plus the named pet's claims anywhere else
LIVE_CLAIMS = f"""
SELECT c.kind, c.subject_id, lower(c.during), upper(c.during), c.lock_id
FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
WHERE c.active AND c.clinic_id = %(clinic_id)s AND c.kind <> 'unit' AND c.during && tstzrange(%(start)s, %(end)s)
  AND (%(subjects)s::uuid[] IS NULL OR c.subject_id = ANY(%(subjects)s::uuid[])) AND {LIVE}
UNION ALL
SELECT c.kind, c.subject_id, lower(c.during), upper(c.during), c.lock_id
FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
WHERE c.active AND c.kind = 'pet' AND c.subject_id = %(pet_id)s AND c.clinic_id <> %(clinic_id)s
  AND c.during && tstzrange(%(start)s, %(end)s) AND {LIVE}
"""

# the lapsed holds whose claims are in the way of [start, end) at the clinic or of the pet, expired
# (the trigger releases their claims in the same statement)
EXPIRE_AROUND = """
WITH ids AS (
  SELECT c.lock_id FROM claims c
  WHERE c.active AND c.clinic_id = %(clinic_id)s AND c.during && tstzrange(%(start)s, %(end)s)
  UNION
  SELECT c.lock_id FROM claims c
  WHERE c.active AND c.kind = 'pet' AND c.subject_id = %(pet_id)s AND c.during && tstzrange(%(start)s, %(end)s)),
lapsed AS (
  UPDATE reservations r SET state = 'EXPIRED', updated_at = %(now)s
  WHERE r.lock_id IN (SELECT lock_id FROM ids) AND r.state = 'HELD' AND r.expires_at <= %(now)s
  RETURNING 1)
SELECT count(*) FROM lapsed
"""

# a scheduled hold's one read (on the autocommit connection): the lapsed holds in the way expired (the
# trigger releases their claims), the catalog's version, the pet's owner and species, and the live
# claims over [lo, hi) of the subjects the hold depends on (a 'meta' row first carries the scalars)
_LIVE_PADDED = (
    LIVE_CLAIMS.replace("%(start)s", "%(lo)s")
    .replace("%(end)s", "%(hi)s")
    .replace("c.lock_id\nFROM", "c.lock_id, NULL::bigint, NULL::uuid, NULL::varchar, NULL::bigint\nFROM")
)
PREPARE_HOLD = (
    """
WITH ids AS (
  SELECT c.lock_id FROM claims c
  WHERE c.active AND c.clinic_id = %(clinic_id)s AND c.during && tstzrange(%(start)s, %(end)s)
  UNION
  SELECT c.lock_id FROM claims c
  WHERE c.active AND c.kind = 'pet' AND c.subject_id = %(pet_id)s AND c.during && tstzrange(%(start)s, %(end)s)),
lapsed AS (
  UPDATE reservations r SET state = 'EXPIRED', updated_at = %(now)s
  WHERE r.lock_id IN (SELECT lock_id FROM ids) AND r.state = 'HELD' AND r.expires_at <= %(now)s
  RETURNING 1)
SELECT 'meta', NULL::uuid, NULL::timestamptz, NULL::timestamptz, NULL::uuid,
  (SELECT version FROM catalog_state WHERE id = 1), p.owner_user_id, p.species, (SELECT count(*) FROM lapsed)
FROM (SELECT 1) AS one LEFT JOIN pets p ON p.id = %(pet_id)s
UNION ALL
SELECT * FROM ("""
    + _LIVE_PADDED
    + ") AS live\n"
)

# a scheduled hold: the reservation and every claim in one statement (all or nothing)
INSERT_HOLD = """
WITH ins AS (
  INSERT INTO reservations (lock_id, owner_user_id, owner_email, owner_name, owner_locale, request_id,
    request_hash, service_id, clinic_id, pet_id, unit, during, state, expires_at, amount_minor, currency, created_at,
    updated_at, provider_id, assignment, resource_ids)
  VALUES (%(lock_id)s, %(owner)s, %(owner_email)s, %(owner_name)s, %(owner_locale)s, %(request_id)s, %(request_hash)s,
    %(service_id)s, %(clinic_id)s, %(pet_id)s, %(unit)s, tstzrange(%(start)s, %(end)s), 'HELD', %(expires_at)s,
    %(amount_minor)s, %(currency)s, %(now)s, %(now)s, %(provider_id)s, %(assignment)s, %(resource_ids)s::uuid[])
  RETURNING lock_id)
INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
SELECT ins.lock_id, k.kind, k.subject_id, 0, %(clinic_id)s, tstzrange(%(start)s, %(claim_end)s), true
FROM ins CROSS JOIN unnest(%(kinds)s::text[], %(subjects)s::uuid[]) AS k(kind, subject_id)
"""

# a scheduled hold in one statement (docs/design/scheduling.md, "Reserving"): the plan folded into the
# insert, as ReserveSlot's capacity statement folds in "the lowest free unit".  From the options the
# schedule alone decided (``HoldOptions``: the candidates in the stable per-day order, per need its items
# in the order they are taken) it takes, against the live claims, the first free candidate with the fewest
# live provider claims starting that local day (an empty day for a chosen provider counts nothing), and
# per need the first free items fit for the pet's species; it inserts the reservation only while the
# request id is new, the pet the owner's (and of a species the service allows), the catalog at the
# caller's version, the pet free, and a candidate and every need's items found, then all its claims.
# A constraint refusing the reservation (a used request id, no_double_booking) or a claim (a concurrent
# winner, or a lapsed hold not expired yet) fails the statement: nothing is inserted, and the caller tries
# once more (a winner's claims are committed by then) before it plans with the claims read (after the
# lapsed holds in the way are expired).
_LIVE_OF = (
    "SELECT 1 FROM claims c JOIN reservations r ON r.lock_id = c.lock_id\n"
    "    WHERE c.active AND c.kind = '{kind}' AND c.subject_id = {subject}\n"
    "      AND c.during && tstzrange(%(start)s, %(claim_end)s) AND " + LIVE
)
HOLD_SCHEDULED = f"""
WITH cat AS (SELECT version FROM catalog_state WHERE id = 1),
pet AS (SELECT owner_user_id, species FROM pets WHERE id = %(pet_id)s),
earlier AS (SELECT 1 FROM reservations WHERE owner_user_id = %(owner)s AND request_id = %(request_id)s),
that_day AS (
  SELECT c.subject_id, count(*) AS n FROM claims c JOIN reservations r ON r.lock_id = c.lock_id
  WHERE c.active AND c.kind = 'provider' AND c.subject_id = ANY(%(providers)s::uuid[])
    AND c.during && tstzrange(%(day_start)s, %(day_end)s) AND lower(c.during) >= %(day_start)s AND {LIVE}
  GROUP BY c.subject_id),
provider AS (
  SELECT p.id, p.seq FROM unnest(%(providers)s::uuid[], %(seqs)s::int[]) WITH ORDINALITY AS p(id, seq, ord)
  LEFT JOIN that_day d ON d.subject_id = p.id
  WHERE NOT EXISTS ({_LIVE_OF.format(kind="provider", subject="p.id")})
  ORDER BY coalesce(d.n, 0), p.ord
  LIMIT 1),
item AS (
  SELECT i.id, i.need, i.seq, row_number() OVER (PARTITION BY i.need ORDER BY i.ord) AS k
  FROM unnest(%(items)s::uuid[], %(item_needs)s::int[], %(item_seqs)s::int[], %(item_species)s::text[])
    WITH ORDINALITY AS i(id, need, seq, species, ord)
  WHERE (i.species = '' OR strpos(i.species, ',' || (SELECT species FROM pet) || ',') > 0)
    AND NOT EXISTS ({_LIVE_OF.format(kind="resource", subject="i.id")})),
taken AS (
  SELECT item.id, item.seq, item.need, item.k
  FROM item JOIN unnest(%(quantities)s::int[]) WITH ORDINALITY AS q(quantity, need) ON q.need = item.need
  WHERE item.k <= q.quantity),
ins AS (
  INSERT INTO reservations (lock_id, owner_user_id, owner_email, owner_name, owner_locale, request_id,
    request_hash, service_id, clinic_id, pet_id, unit, during, state, expires_at, amount_minor, currency, created_at,
    updated_at, provider_id, assignment, resource_ids)
  SELECT %(lock_id)s, %(owner)s, %(owner_email)s, %(owner_name)s, %(owner_locale)s, %(request_id)s, %(request_hash)s,
    %(service_id)s, %(clinic_id)s, %(pet_id)s,
    COALESCE((SELECT seq FROM provider), (SELECT seq FROM taken ORDER BY need, k LIMIT 1), 1),
    tstzrange(%(start)s, %(end)s), 'HELD', %(expires_at)s, %(amount_minor)s, %(currency)s, %(now)s, %(now)s,
    (SELECT id FROM provider), %(assignment)s, ARRAY(SELECT id FROM taken ORDER BY need, k)
  WHERE NOT EXISTS (SELECT 1 FROM earlier) AND (SELECT owner_user_id FROM pet) = %(owner)s
    AND (SELECT version FROM cat) = %(catalog_version)s
    AND (cardinality(%(allowed)s::text[]) = 0 OR (SELECT species FROM pet) = ANY(%(allowed)s::text[]))
    AND NOT EXISTS ({_LIVE_OF.format(kind="pet", subject="%(pet_id)s")})
    AND (cardinality(%(providers)s::uuid[]) = 0 OR EXISTS (SELECT 1 FROM provider))
    AND (SELECT count(*) FROM taken) = %(wanted)s
  RETURNING unit, provider_id, resource_ids),
claimed AS (
  INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
  SELECT %(lock_id)s, k.kind, k.subject_id, 0, %(clinic_id)s, tstzrange(%(start)s, %(claim_end)s), true
  FROM ins CROSS JOIN LATERAL (
    SELECT 'pet', %(pet_id)s::uuid
    UNION ALL SELECT 'provider', ins.provider_id WHERE ins.provider_id IS NOT NULL
    UNION ALL SELECT 'resource', u FROM unnest(ins.resource_ids) AS u) AS k(kind, subject_id))
SELECT EXISTS (SELECT 1 FROM earlier), (SELECT unit FROM ins), (SELECT provider_id FROM ins),
  (SELECT resource_ids FROM ins)
"""

# the arguments of the function ``hold_scheduled`` (migration 0011) in order: its body is HOLD_SCHEDULED
# with ``%(name)s`` as ``$n`` (tests/unit pin the two together), and it runs under
# ``plan_cache_mode = force_generic_plan``: PL/pgSQL keeps the statement's generic plan per connection,
# also behind a transaction pooler, where nothing is prepared server-side; a prepared statement of the
# same text was planned afresh per call (custom plans, 2-6 ms of PostgreSQL's CPU per hold vs ~1 ms)
HOLD_ARGS = (
    "lock_id owner owner_email owner_name owner_locale request_id request_hash service_id clinic_id pet_id "
    "start end claim_end expires_at amount_minor currency now catalog_version providers seqs day_start day_end "
    "assignment items item_needs item_seqs item_species quantities wanted allowed"
).split()
CALL_HOLD_SCHEDULED = (
    "SELECT * FROM hold_scheduled(" + ", ".join(f"p_{a} => %({a})s" for a in HOLD_ARGS) + ")"
)

# where a refused claim's constraint name points
CONFLICTS = {
    "claims_provider_free": "provider",
    "claims_resource_free": "resource",
    "claims_pet_free": "pet",
    "claims_unit_free": "unit",
    "no_double_booking": "unit",
    "reservations_idempotency": "request",
}


def conflict_of(exc: Exception) -> str | None:
    name = getattr(getattr(exc, "diag", None), "constraint_name", None)
    return CONFLICTS.get(name or "")


def unit_meaning(res: Reservation, kind: str) -> str:
    """A scheduled hold's unit is its provider's (else its first item's) number: no_double_booking
    refusing it means that provider (item) is taken for this service."""
    if kind != "unit":
        return kind
    return "provider" if res.provider_id is not None else "resource"


class ScheduleQueries(Queries):
    # -- reads
    async def clinic_schedule(self, clinic_id: uuid.UUID, now: datetime) -> ClinicSchedule:
        """The clinic's providers (their time off that has not ended) and resource items."""
        provs = {
            r.id: _provider(r)
            for r in await self.session.execute(
                select(providers).where(providers.c.clinic_id == clinic_id).order_by(providers.c.seq)
            )
        }
        if provs:
            for t in await self.session.execute(
                select(provider_time_off)
                .where(
                    provider_time_off.c.provider_id.in_(list(provs)),
                    func.upper(provider_time_off.c.during) > now,
                )
                .order_by(func.lower(provider_time_off.c.during))
            ):
                provs[t.provider_id].time_off.append(_time_off(t))
        items = [
            _resource(r)
            for r in await self.session.execute(
                select(resources, resource_types.c.name.label("type_name"))
                .join(resource_types, resource_types.c.id == resources.c.type_id)
                .where(resources.c.clinic_id == clinic_id)
                .order_by(resources.c.seq)
            )
        ]
        return ClinicSchedule(provs, items)

    async def provider(self, clinic_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        r = (
            await self.session.execute(
                select(providers).where(providers.c.clinic_id == clinic_id, providers.c.id == provider_id)
            )
        ).first()
        if r is None:
            return None
        p = _provider(r)
        for t in await self.session.execute(
            select(provider_time_off)
            .where(provider_time_off.c.provider_id == provider_id)
            .order_by(func.lower(provider_time_off.c.during))
        ):
            p.time_off.append(_time_off(t))
        return p

    async def list_providers(
        self, clinic_id: uuid.UUID, show_archived: bool, after: tuple[str, ...] | None, limit: int
    ) -> list[Provider]:
        q = select(providers.c.id).where(providers.c.clinic_id == clinic_id)
        if not show_archived:
            q = q.where(providers.c.archived_at.is_(None))
        if after:
            q = q.where(
                func.row(providers.c.display_name, providers.c.id) > func.row(after[0], uuid.UUID(after[1]))
            )
        q = q.order_by(providers.c.display_name, providers.c.id).limit(limit)
        out = []
        for (pid,) in await self.session.execute(q):
            p = await self.provider(clinic_id, pid)
            assert p is not None
            out.append(p)
        return out

    async def resource(self, clinic_id: uuid.UUID, resource_id: uuid.UUID) -> Resource | None:
        r = (
            await self.session.execute(
                select(resources, resource_types.c.name.label("type_name"))
                .join(resource_types, resource_types.c.id == resources.c.type_id)
                .where(resources.c.clinic_id == clinic_id, resources.c.id == resource_id)
            )
        ).first()
        return _resource(r) if r else None

    async def list_resources(
        self, clinic_id: uuid.UUID, show_archived: bool, after: tuple[str, ...] | None, limit: int
    ) -> list[Resource]:
        q = (
            select(resources, resource_types.c.name.label("type_name"))
            .join(resource_types, resource_types.c.id == resources.c.type_id)
            .where(resources.c.clinic_id == clinic_id)
        )
        if not show_archived:
            q = q.where(resources.c.archived_at.is_(None))
        if after:
            q = q.where(
                func.row(resource_types.c.name, resources.c.display_name, resources.c.id)
                > func.row(after[0], after[1], uuid.UUID(after[2]))
            )
        q = q.order_by(resource_types.c.name, resources.c.display_name, resources.c.id).limit(limit)
        return [_resource(r) for r in await self.session.execute(q)]

    async def upcoming_bookings_using(
        self, clinic_id: uuid.UUID, subject_id: uuid.UUID, now: datetime
    ) -> list[Booking]:
        """Confirmed bookings of the clinic starting after ``now`` whose provider or one of whose
        resource items is ``subject_id``."""
        q = (
            select(bookings)
            .where(
                bookings.c.clinic_id == clinic_id,
                bookings.c.state == "CONFIRMED",
                bookings.c.start_time > now,
                or_(
                    bookings.c.provider_id == subject_id, literal(subject_id) == any_(bookings.c.resource_ids)
                ),
            )
            .order_by(bookings.c.start_time, bookings.c.id)
        )
        return [booking_from_row(r) for r in await self.session.execute(q)]

    # -- admin changes (the caller locks the clinic row and bumps the catalog)
    async def add_provider(self, p: Provider, request_id: uuid.UUID | None = None) -> uuid.UUID:
        """Insert with the clinic's next number; a used ``request_id`` returns the first provider's id."""
        if (found := await self._made_by(providers, request_id)) is not None:
            return found
        p.seq = await self._next_seq(providers, p.clinic_id)
        await self.session.execute(
            insert(providers).values(
                id=p.id,
                clinic_id=p.clinic_id,
                seq=p.seq,
                display_name=p.display_name,
                user_id=p.user_id,
                weekly_hours=hours_json(p.weekly_hours),
                version=p.version,
                request_id=request_id,
            )
        )
        return p.id

    async def save_provider(self, p: Provider, *, archive_at: datetime | None = None) -> None:
        values = {
            "display_name": p.display_name,
            "user_id": p.user_id,
            "weekly_hours": hours_json(p.weekly_hours),
        }
        await self._save_versioned(providers, p.id, values, archive_at)
        p.version += 1

    async def _made_by(self, table: Any, request_id: uuid.UUID | None) -> uuid.UUID | None:
        """The id of the row an earlier call with ``request_id`` inserted, if any."""
        if request_id is None:
            return None
        found = (
            await self.session.execute(select(table.c.id).where(table.c.request_id == request_id))
        ).scalar()
        return cast("uuid.UUID | None", found)

    async def _next_seq(self, table: Any, clinic_id: uuid.UUID) -> int:
        """The clinic's next number in ``table`` (the stable order of providers or items)."""
        q = select(func.coalesce(func.max(table.c.seq), 0) + 1).where(table.c.clinic_id == clinic_id)
        return int((await self.session.execute(q)).scalar_one())

    async def _save_versioned(
        self, table: Any, row_id: uuid.UUID, values: dict[str, Any], archive_at: datetime | None
    ) -> None:
        extra: dict[str, Any] = {"version": table.c.version + 1}
        if archive_at is not None:
            extra["archived_at"] = archive_at
        await self.session.execute(update(table).where(table.c.id == row_id).values(**values, **extra))

    async def add_time_off(self, t: TimeOff) -> bool:
        """False (nothing inserted, the transaction goes on) when it overlaps another of the provider's."""
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    insert(provider_time_off).values(
                        id=t.id,
                        provider_id=t.provider_id,
                        during=func.tstzrange(t.start, t.end),
                        reason=t.reason,
                    )
                )
        except IntegrityError as exc:
            if is_violation(exc, ExclusionViolation):
                return False
            raise
        return True

    async def delete_time_off(self, provider_id: uuid.UUID, time_off_id: uuid.UUID) -> bool:
        r = await self.session.execute(
            delete(provider_time_off).where(
                provider_time_off.c.provider_id == provider_id, provider_time_off.c.id == time_off_id
            )
        )
        return bool(cast(CursorResult[Any], r).rowcount)

    async def _type_id(self, clinic_id: uuid.UUID, name: str, *, create: bool) -> uuid.UUID | None:
        found = (
            await self.session.execute(
                select(resource_types.c.id).where(
                    resource_types.c.clinic_id == clinic_id, resource_types.c.name == name
                )
            )
        ).scalar()
        if found is not None or not create:
            return cast("uuid.UUID | None", found)
        new = uuid.uuid4()
        await self.session.execute(insert(resource_types).values(id=new, clinic_id=clinic_id, name=name))
        return new

    async def add_resource(self, r: Resource, request_id: uuid.UUID | None = None) -> uuid.UUID:
        if (found := await self._made_by(resources, request_id)) is not None:
            return found
        type_id = await self._type_id(r.clinic_id, r.resource_type, create=True)
        r.seq = await self._next_seq(resources, r.clinic_id)
        await self.session.execute(
            insert(resources).values(
                id=r.id,
                clinic_id=r.clinic_id,
                type_id=type_id,
                seq=r.seq,
                display_name=r.display_name,
                species=list(r.species),
                version=r.version,
                request_id=request_id,
            )
        )
        return r.id

    async def save_resource(self, r: Resource, *, archive_at: datetime | None = None) -> None:
        await self._save_versioned(
            resources, r.id, {"display_name": r.display_name, "species": list(r.species)}, archive_at
        )
        r.version += 1

    async def set_service_requirements(
        self,
        service_id: uuid.UUID,
        clinic_id: uuid.UUID,
        provider_ids: tuple[uuid.UUID, ...],
        needs: tuple[ServiceNeed, ...],
    ) -> None:
        """Replace who can perform the service and what it needs (the types exist: checked by the caller)."""
        await self.session.execute(
            delete(service_providers).where(service_providers.c.service_id == service_id)
        )
        await self.session.execute(delete(service_needs).where(service_needs.c.service_id == service_id))
        if provider_ids:
            await self.session.execute(
                insert(service_providers),
                [{"service_id": service_id, "provider_id": p} for p in provider_ids],
            )
        for n in needs:
            type_id = await self._type_id(clinic_id, n.resource_type, create=False)
            assert type_id is not None, n.resource_type
            await self.session.execute(
                insert(service_needs).values(service_id=service_id, type_id=type_id, quantity=n.quantity)
            )

    # -- the seed (idempotent by id)
    async def upsert_provider(self, p: Provider) -> None:
        if await self.provider(p.clinic_id, p.id) is None:
            await self.add_provider(p)
            return
        await self.session.execute(
            update(providers)
            .where(providers.c.id == p.id)
            .values(display_name=p.display_name, weekly_hours=hours_json(p.weekly_hours))
        )

    async def upsert_resource(self, r: Resource) -> None:
        if await self.resource(r.clinic_id, r.id) is None:
            await self.add_resource(r)
            return
        await self.session.execute(
            update(resources)
            .where(resources.c.id == r.id)
            .values(display_name=r.display_name, species=list(r.species))
        )

    # -- claims
    async def live_claims(
        self,
        clinic_id: uuid.UUID,
        pet_id: uuid.UUID | None,
        start: datetime,
        end: datetime,
        now: datetime,
        subjects: list[uuid.UUID] | None = None,
    ) -> list[Claim]:
        """Live claims over [start, end) of the clinic's providers, resources and pets (only these
        ``subjects``, if given), and of the pet (if given) anywhere."""
        cur = await raw_execute(
            self.session,
            LIVE_CLAIMS,
            {
                "clinic_id": clinic_id,
                "pet_id": pet_id,
                "start": start,
                "end": end,
                "now": now,
                "subjects": subjects,
            },
            operation="SELECT",
        )
        return [Claim(ClaimKind(k), s, lo, hi, lock) for k, s, lo, hi, lock in await cur.fetchall()]

    async def expire_lapsed_around(
        self, clinic_id: uuid.UUID, pet_id: uuid.UUID, start: datetime, end: datetime, now: datetime
    ) -> int:
        cur = await raw_execute(
            self.session,
            EXPIRE_AROUND,
            {"clinic_id": clinic_id, "pet_id": pet_id, "start": start - MAX_BUFFER, "end": end, "now": now},
            operation="UPDATE",
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def prepare_hold(
        self,
        clinic_id: uuid.UUID,
        pet_id: uuid.UUID,
        start: datetime,
        end: datetime,
        lo: datetime,
        hi: datetime,
        now: datetime,
        subjects: list[uuid.UUID],
    ) -> tuple[int, uuid.UUID | None, str | None, list[Claim]]:
        cur = await raw_execute(
            self.session,
            PREPARE_HOLD,
            {
                "clinic_id": clinic_id,
                "pet_id": pet_id,
                "start": start - MAX_BUFFER,
                "end": end,
                "lo": lo,
                "hi": hi,
                "now": now,
                "subjects": subjects,
            },
            operation="UPDATE",
        )
        rows = await cur.fetchall()
        meta = next(r for r in rows if r[0] == "meta")
        claims = [Claim(ClaimKind(r[0]), r[1], r[2], r[3], r[4]) for r in rows if r[0] != "meta"]
        return int(meta[5]), meta[6], meta[7], claims

    async def insert_hold(self, res: Reservation, claims: list[Claim]) -> str | None:
        """Insert the reservation and its claims, all or nothing (one statement; in a savepoint inside a
        transaction): None when done, else what refused it ("provider", "resource", "pet", "unit",
        "request", or "retry" for a deadlock between two racing holds; nothing changed, a transaction
        goes on)."""
        params = {
            **hold_params(res),
            "unit": res.unit,
            "provider_id": res.provider_id,
            "assignment": res.assignment,
            "resource_ids": list(res.resource_ids),
            "kinds": [c.kind.value for c in claims],
            "subjects": [c.subject_id for c in claims],
        }
        try:
            if (await driver_connection(self.session)).autocommit:  # one statement, its own transaction
                await raw_execute(self.session, INSERT_HOLD, params, operation="INSERT")
            else:
                async with self.session.begin_nested():  # a lost race rolls back to here, not the unit
                    await raw_execute(self.session, INSERT_HOLD, params, operation="INSERT")
        except (ExclusionViolation, UniqueViolation) as exc:
            return unit_meaning(res, conflict_of(exc) or "unit")
        except DeadlockDetected:
            # two holds checking each other's fresh claims at once (an exclusion constraint's check can
            # wait both ways): PostgreSQL aborted this one; nothing was written, look again
            return "retry"
        return None

    async def hold_scheduled(
        self, res: Reservation, options: HoldOptions, catalog_version: int
    ) -> ScheduledAttempt:
        """The scheduled hold in one statement (``HOLD_SCHEDULED`` in the function ``hold_scheduled``,
        under its generic plan; a savepoint inside a transaction)."""
        items = [(need, r) for need, (_, rs) in enumerate(options.needs, 1) for r in rs]
        # the arrays as literals (cast in the statement): psycopg's list adaptation costs more per call
        # than the rest of the parameters together
        params = {
            **hold_params(res),
            "catalog_version": catalog_version,
            "providers": _literal(p.id for p in options.providers),
            "seqs": _literal(p.seq for p in options.providers),
            "day_start": options.day_start,
            "day_end": options.day_end,
            "assignment": options.assignment.value if options.assignment else None,
            "items": _literal(r.id for _, r in items),
            "item_needs": _literal(need for need, _ in items),
            "item_seqs": _literal(r.seq for _, r in items),
            "item_species": _literal(f'",{",".join(r.species)},"' if r.species else '""' for _, r in items),
            "quantities": _literal(quantity for quantity, _ in options.needs),
            "wanted": sum(quantity for quantity, _ in options.needs),
            "allowed": _literal(f'"{s}"' for s in options.species_allowed),
        }
        conn = await driver_connection(self.session)
        try:
            if conn.autocommit:  # one statement, its own transaction
                cur = await raw_execute(self.session, CALL_HOLD_SCHEDULED, params, operation="INSERT")
            else:
                async with self.session.begin_nested():  # a lost race rolls back to here, not the unit
                    cur = await raw_execute(self.session, CALL_HOLD_SCHEDULED, params, operation="INSERT")
        except (ExclusionViolation, UniqueViolation, DeadlockDetected):
            return ScheduledAttempt(False, raced=True)  # a claim taken meanwhile, or by a lapsed hold
        row = await cur.fetchone()
        assert row is not None  # the outer SELECT always yields one row
        earlier, unit, provider_id, resource_ids = row
        if unit is None:
            return ScheduledAttempt(False, earlier=earlier)
        return ScheduledAttempt(True, False, unit, provider_id, tuple(resource_ids))

    async def move_claimed(self, lock_id: uuid.UUID, start: datetime, end: datetime, now: datetime) -> bool:
        """Move a scheduled reservation (and, by the trigger, all its claims) to [start, end) in one
        statement; False (nothing changed, the transaction goes on) when a claim is taken there."""
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    update(reservations)
                    .where(reservations.c.lock_id == lock_id)
                    .values(during=func.tstzrange(start, end), updated_at=now)
                )
        except IntegrityError as exc:
            if is_violation(exc, ExclusionViolation):
                return False
            raise
        return True


def _literal(values: Iterable[object]) -> str:
    """An array literal of uuids, numbers or double-quoted words (species: letters only)."""
    return "{" + ",".join(map(str, values)) + "}"


def _provider(r: Row[Any]) -> Provider:
    return Provider(
        id=r.id,
        clinic_id=r.clinic_id,
        display_name=r.display_name,
        weekly_hours=hours_from_json(r.weekly_hours),
        user_id=r.user_id,
        seq=r.seq,
        archived=r.archived_at is not None,
        version=r.version,
    )


def _time_off(t: Row[Any]) -> TimeOff:
    return TimeOff(t.id, t.provider_id, t.during.lower, t.during.upper, t.reason)


def _resource(r: Row[Any]) -> Resource:
    return Resource(
        id=r.id,
        clinic_id=r.clinic_id,
        display_name=r.display_name,
        resource_type=r.type_name,
        species=tuple(r.species or ()),
        seq=r.seq,
        archived=r.archived_at is not None,
        version=r.version,
    )
