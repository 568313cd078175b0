"""Booking's repository contract (tests/contracts/booking_repository.py) against the hand-written fake
the use-case tests run on (tests/unit/fakes/booking.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from booking_svc.ports import OutboxEvent, UnitOfWork
from tests.contracts.booking_repository import (
    BlockedWaiter,
    BookingRepositoryContract,
    OutboxReader,
    Relay,
    SchedulingContract,
)
from tests.contracts.staff_ops import StaffOpsContract
from tests.unit.fakes.booking import BookingStore, booking_uow


class TestFakeBookingRepository(BookingRepositoryContract, SchedulingContract, StaffOpsContract):
    ROW_LOCKS = False

    @pytest.fixture
    def store(self) -> BookingStore:
        return BookingStore()

    @pytest.fixture
    def uow(self, store: BookingStore) -> UnitOfWork:
        return booking_uow(store)

    @pytest.fixture
    def read(self, store: BookingStore) -> UnitOfWork:
        return booking_uow(store)

    @pytest.fixture
    def outbox(self, store: BookingStore) -> OutboxReader:
        async def rows(event_ids: list[uuid.UUID]) -> list[OutboxEvent]:
            return [e for e in store.outbox if e.event_id in event_ids]

        return rows

    @pytest.fixture
    def relayed(self, store: BookingStore) -> Relay:
        async def relay() -> None:
            store.sent |= {e.event_id for e in store.outbox}

        return relay

    @pytest.fixture
    def blocked(self) -> BlockedWaiter:
        async def until_done(task: asyncio.Task[Any]) -> None:
            # the fake has no locks: the racing call sees the first one's row and finishes at once
            await asyncio.wait({task})

        return until_done
