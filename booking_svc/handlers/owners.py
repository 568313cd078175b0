"""An owner across booking: the data export, and the erasure of a deleted account (account.deleted).

Erasure, exactly once in effect (the event id is recorded in the transaction that anonymises):

1. every booking still to come is cancelled as an owner cancellation through the ordinary cancel use
   case (refund by the booking's own policy, booking.cancelled to the outbox: the clinic's feed and the
   owner's last notice), under a request id derived from the event, so a redelivery replays it; holds
   waiting for payment are cancelled (a late payment is refunded: RESERVATION_CLOSED);
2. once the relay has sent those events (they still carry the owner's contact, for that last notice),
   one transaction anonymises pets, reservations and bookings, drops the bookings' outbox rows and
   records the event.  Until then the step raises EventsPending and the subscriber tries again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from booking_svc.domain import Actor, BookingNotConfirmed, BookingStarted, ReservationState
from booking_svc.handlers.lifecycle import LifecycleHandlers
from booking_svc.ports import UnitOfWork
from petpro.clock import utcnow
from petpro.erasure import AccountDeleted
from petpro.errors import Unavailable
from petpro.mesh import ACCOUNT_DELETED

log = logging.getLogger("booking_svc")
CANCEL_REASON = "account deleted"


class EventsPending(Unavailable):
    """The cancellations' events are not relayed yet: erase after they are (retried)."""

    reason = "EVENTS_PENDING"


class OwnerHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        read: UnitOfWork,
        lifecycle: LifecycleHandlers,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.uow = uow
        self.read = read
        self.lifecycle = lifecycle
        self.clock = clock

    async def erase(self, event: AccountDeleted) -> None:
        owner = event.user_id
        async with self.read() as repo:
            if await repo.event_processed(event.event_id):
                return
            future = await repo.owner_future_bookings(owner, self.clock())
        for booking_id in future:
            request_id = str(uuid.uuid5(event.event_id, f"cancel:{booking_id}"))
            try:
                await self.lifecycle.cancel(request_id, booking_id, Actor.OWNER, CANCEL_REASON, owner=owner)
            except (BookingNotConfirmed, BookingStarted):  # cancelled meanwhile, or it just started
                continue
        async with self.uow() as repo:
            now = self.clock()
            for lock_id in await repo.owner_held_reservations(owner):
                await repo.set_reservation_state(lock_id, ReservationState.CANCELLED, now)
        async with self.uow() as repo:
            if await repo.owner_unsent_events(owner):
                raise EventsPending("the cancellations are not relayed yet")
            if not await repo.record_processed(event.event_id, ACCOUNT_DELETED.name, self.clock()):
                return  # another replica erased it meanwhile (its transaction did the same)
            await repo.erase_owner(owner, self.clock())
        log.info(
            "erased a deleted account's data",
            extra={"fields": {"event_id": str(event.event_id), "cancelled": len(future)}},
        )

    async def export(self, owner: uuid.UUID) -> tuple[dict[str, Any], list[str]]:
        """The owner's rows, and the lock ids of their reservations (their payments' order references)."""
        async with self.read() as repo:
            data = await repo.owner_export(owner)
        return data, [str(r["lock_id"]) for r in data["reservations"]]
