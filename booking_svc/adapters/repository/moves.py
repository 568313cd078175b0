"""Staff moves (issue 20, staff operations): a scheduled reservation given another time, provider or
resource items in one savepoint, its old claims released and the new ones taken, all or nothing."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg.errors import ExclusionViolation, UniqueViolation

from booking_svc.adapters.repository.rows import Queries
from booking_svc.adapters.repository.schedule import conflict_of
from booking_svc.domain import Claim
from petpro.db import raw_execute

# the old claims go first (else the trigger would shift them onto the new range, where they might
# collide with the very claims being taken), then the reservation moves, then the new claims
RELEASE = "DELETE FROM claims WHERE lock_id = %(lock_id)s"
REASSIGN = """
UPDATE reservations SET during = tstzrange(%(start)s, %(end)s), unit = %(unit)s,
  provider_id = %(provider_id)s, resource_ids = %(resource_ids)s::uuid[], updated_at = %(now)s
WHERE lock_id = %(lock_id)s AND state IN ('HELD', 'CONFIRMED')
RETURNING lock_id, clinic_id
"""
TAKE = """
INSERT INTO claims (lock_id, kind, subject_id, unit, clinic_id, during, active)
SELECT %(lock_id)s, k.kind, k.subject_id, 0, %(clinic_id)s, tstzrange(k.lo, k.hi), true
FROM unnest(%(kinds)s::text[], %(subjects)s::uuid[], %(los)s::timestamptz[], %(his)s::timestamptz[])
  AS k(kind, subject_id, lo, hi)
"""


class MoveQueries(Queries):
    async def reassign_claims(
        self,
        lock_id: uuid.UUID,
        start: datetime,
        end: datetime,
        unit: int,
        provider_id: uuid.UUID | None,
        resource_ids: tuple[uuid.UUID, ...],
        claims: list[Claim],
        now: datetime,
    ) -> str | None:
        """Give an active scheduled reservation [start, end), ``unit``, ``provider_id`` and
        ``resource_ids``, and replace all its claims by ``claims``, in a savepoint: None when done,
        else what refused it ("provider", "resource", "pet" or "unit"; nothing changed, the
        transaction goes on).  Raises LookupError when the reservation is not active."""
        params = {
            "lock_id": lock_id,
            "start": start,
            "end": end,
            "unit": unit,
            "provider_id": provider_id,
            "resource_ids": list(resource_ids),
            "now": now,
        }
        try:
            async with self.session.begin_nested():  # a taken claim rolls back to here
                await raw_execute(self.session, RELEASE, {"lock_id": lock_id}, operation="DELETE")
                row = await (await raw_execute(self.session, REASSIGN, params, operation="UPDATE")).fetchone()
                if row is None:
                    raise LookupError(lock_id)
                await raw_execute(
                    self.session,
                    TAKE,
                    {
                        "lock_id": lock_id,
                        "clinic_id": row[1],
                        "kinds": [c.kind.value for c in claims],
                        "subjects": [c.subject_id for c in claims],
                        "los": [c.start for c in claims],
                        "his": [c.end for c in claims],
                    },
                    operation="INSERT",
                )
        except (ExclusionViolation, UniqueViolation) as exc:
            kind = conflict_of(exc) or "unit"
            if kind == "unit":  # no_double_booking: the unit is the provider's (else an item's) number
                kind = "provider" if provider_id is not None else "resource"
            return kind
        return None
