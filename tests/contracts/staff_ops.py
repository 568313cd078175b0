"""Booking repository contract for staff operations (issue 20): a staff move gives a reservation another
time, provider and items, its old claims released and the new ones taken all or nothing; a booking
paid at the clinic has no payment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from booking_svc.domain import Booking, ClaimKind, ReservationState
from booking_svc.ports import UnitOfWork
from tests.contracts.booking_repository import (
    DAY,
    HALF_HOUR,
    T0,
    BookingRepositoryContract,
    SchedulingContract,
    new_event,
)


class StaffOpsContract:
    async def test_a_move_swaps_provider_and_room_releasing_the_old_claims(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, okafor), (room1, room2) = await SchedulingContract.scheduled_clinic(uow)
        pet, pet2 = await BookingRepositoryContract.pets(uow, 2)
        held, _ = hold = SchedulingContract.scheduled_hold(svc, pet, weber, [room1])
        later = DAY + timedelta(hours=1)
        _, claims = SchedulingContract.scheduled_hold(svc, pet, okafor, [room2], start=later)
        async with uow() as repo:
            assert await repo.insert_hold(*hold) is None
        async with uow() as repo:
            taken = await repo.reassign_claims(
                held.lock_id, later, later + HALF_HOUR, okafor.seq, okafor.id, (room2.id,), claims, T0
            )
            assert taken is None
        async with uow() as repo:
            got = await repo.reservation(held.lock_id)
            live = await repo.live_claims(clinic.id, None, DAY - HALF_HOUR, later + HALF_HOUR * 2, T0)
            # Dr Weber and room 1 at the old time are free again: another pet takes them
            again = SchedulingContract.scheduled_hold(svc, pet2, weber, [room1])
            assert await repo.insert_hold(*again) is None
        assert got is not None
        assert (got.start, got.end, got.provider_id, got.resource_ids, got.unit) == (
            later,
            later + HALF_HOUR,
            okafor.id,
            (room2.id,),
            okafor.seq,
        )
        mine = {(c.kind, c.subject_id, c.start, c.end) for c in live if c.lock_id == held.lock_id}
        until = later + timedelta(minutes=40)
        assert mine == {
            (ClaimKind.PET, pet.id, later, until),
            (ClaimKind.PROVIDER, okafor.id, later, until),
            (ClaimKind.RESOURCE, room2.id, later, until),
        }

    async def test_a_move_onto_a_taken_provider_or_room_changes_nothing(self, uow: UnitOfWork) -> None:
        clinic, svc, (weber, okafor), (room1, room2) = await SchedulingContract.scheduled_clinic(uow)
        pet, pet2, pet3 = await BookingRepositoryContract.pets(uow, 3)
        mine = SchedulingContract.scheduled_hold(svc, pet, weber, [room1])
        theirs = SchedulingContract.scheduled_hold(svc, pet2, okafor, [room2], start=DAY + timedelta(hours=1))
        async with uow() as repo:
            assert await repo.insert_hold(*mine) is None
            assert await repo.insert_hold(*theirs) is None
        at = DAY + timedelta(hours=1, minutes=15)  # overlaps theirs
        lock = mine[0].lock_id
        async with uow() as repo:
            _, vet_claims = SchedulingContract.scheduled_hold(svc, pet, okafor, [room1], start=at)
            assert (
                await repo.reassign_claims(
                    lock, at, at + HALF_HOUR, okafor.seq, okafor.id, (room1.id,), vet_claims, T0
                )
                == "provider"
            )
            _, room_claims = SchedulingContract.scheduled_hold(svc, pet, weber, [room2], start=at)
            assert (
                await repo.reassign_claims(
                    lock, at, at + HALF_HOUR, weber.seq, weber.id, (room2.id,), room_claims, T0
                )
                == "resource"
            )
            # the transaction goes on: the reservation and its claims are as they were
            got = await repo.reservation(lock)
            live = await repo.live_claims(clinic.id, None, DAY - HALF_HOUR, DAY + timedelta(hours=3), T0)
            # and its old claims still hold: nobody else takes Dr Weber at its time
            rival = SchedulingContract.scheduled_hold(svc, pet3, weber, [room2])
            assert await repo.insert_hold(*rival) == "provider"
        assert got is not None
        assert (got.start, got.provider_id, got.resource_ids) == (DAY, weber.id, (room1.id,))
        assert {(c.kind, c.subject_id) for c in live if c.lock_id == lock} == {
            (ClaimKind.PET, pet.id),
            (ClaimKind.PROVIDER, weber.id),
            (ClaimKind.RESOURCE, room1.id),
        }

    async def test_an_inactive_reservation_is_not_moved(self, uow: UnitOfWork) -> None:
        _, svc, (weber, _), (room1, _) = await SchedulingContract.scheduled_clinic(uow)
        pet = await BookingRepositoryContract.pet(uow)
        held, claims = SchedulingContract.scheduled_hold(svc, pet, weber, [room1])
        async with uow() as repo:
            assert await repo.insert_hold(held, claims) is None
            await repo.set_reservation_state(held.lock_id, ReservationState.CANCELLED, T0)
        async with uow() as repo:
            with pytest.raises(LookupError):
                await repo.reassign_claims(
                    held.lock_id, DAY, DAY + HALF_HOUR, weber.seq, weber.id, (room1.id,), claims, T0
                )

    async def test_a_booking_paid_at_the_clinic_has_no_payment_and_keeps_its_move(
        self, uow: UnitOfWork
    ) -> None:
        _, svc, (weber, okafor), (room1, _) = await SchedulingContract.scheduled_clinic(uow)
        pet = await BookingRepositoryContract.pet(uow)
        held, claims = SchedulingContract.scheduled_hold(svc, pet, weber, [room1])
        async with uow() as repo:
            assert await repo.insert_hold(held, claims) is None
        async with uow() as repo:
            found = await repo.lock_for_confirm(held.lock_id)
            assert found is not None
            booking = Booking.confirm(found[0], None, T0, svc.policy)
            await repo.confirm_booking(booking, new_event(booking))
        async with uow() as repo:
            stored = await repo.booking(booking.id)
            res = await repo.reservation(held.lock_id)
            assert stored is not None
            stored.provider_id = okafor.id
            stored.reschedule(DAY + HALF_HOUR, DAY + HALF_HOUR * 2, T0)
            await repo.save_booking_change(stored)
        async with uow() as repo:
            moved = await repo.booking(booking.id)
        assert (stored.pay_at_clinic, stored.payment_id) == (True, None)
        assert res is not None and (res.state, res.payment_id) == (ReservationState.CONFIRMED, None)
        assert moved is not None
        assert (moved.provider_id, moved.start, moved.pay_at_clinic) == (okafor.id, DAY + HALF_HOUR, True)
