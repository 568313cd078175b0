"""The PaymentRepository port (payment_svc.ports), written once: every method, its edge cases and what
it refuses.  ``tests/unit/test_contract_payment.py`` runs it against the in-memory fake,
``tests/integration/test_contract_payment.py`` against the SQL adapter on the embedded PostgreSQL.

The database is shared with other tests: rows are told apart by unique ids, and the queries over the
whole table (pending_past, unsettled, pending_to_check) are asked about a moment of the test's own,
earlier than any row another test made (:func:`moment`), so they see this test's rows only."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain import GatewayEvent, Payment, PaymentStatus, Refund
from payment_svc.ports import UnitOfWork

_days = itertools.count(1)
_START = datetime(2000, 1, 1, tzinfo=UTC)


def moment() -> datetime:
    """A moment no other test used, earlier than every moment handed out before (a day apart)."""
    return _START - timedelta(days=next(_days))


def payment(
    at: datetime,
    *,
    status: PaymentStatus = PaymentStatus.PENDING,
    order_ref: str | None = None,
    session: bool = True,
    expires_in: timedelta | None = timedelta(minutes=10),
    amount_minor: int = 4500,
) -> Payment:
    pid = uuid.uuid4()
    return Payment(
        id=pid,
        order_ref=order_ref or str(uuid.uuid4()),
        request_id=f"req-{pid}",
        status=status,
        amount_minor=amount_minor,
        currency="EUR",
        customer_email="owner@example.test",
        session_id=f"cs_{pid.hex}" if session else None,
        payment_url=f"https://pay.example.test/{pid.hex}" if session else None,
        provider_payment_id=None,
        expires_at=at + expires_in if expires_in is not None else None,
        created_at=at,
        updated_at=at,
    )


def refund(p: Payment, at: datetime, amount_minor: int = 1000, status: str = "succeeded") -> Refund:
    rid = uuid.uuid4().hex
    return Refund(f"refund-{rid}", p.id, f"re_{rid}", amount_minor, p.currency, status, at, at)


class PaymentRepositoryContract:
    @pytest.fixture
    def uow(self) -> UnitOfWork:
        """A unit-of-work factory over the repository under test."""
        raise NotImplementedError

    async def stored(self, uow: UnitOfWork, *payments: Payment) -> None:
        """Insert payments as created, then store what add() does not take (session, status)."""
        for p in payments:
            async with uow() as repo:
                assert await repo.add(p)
                await repo.save(p, p.updated_at)

    # -- add, get, by_request --------------------------------------------------------------------------

    async def test_add_then_get_returns_the_payment_as_given(self, uow: UnitOfWork) -> None:
        p = payment(moment(), session=False)
        async with uow() as repo:
            assert await repo.add(p) is True
        async with uow() as repo:
            assert await repo.get(p.id) == p
            assert await repo.get(p.id, for_update=True) == p
            assert await repo.by_request(p.request_id) == p

    async def test_add_of_a_known_request_id_is_refused_and_keeps_the_first(self, uow: UnitOfWork) -> None:
        first = payment(moment(), session=False)
        retry = payment(moment(), session=False, amount_minor=9900)
        retry.request_id = first.request_id
        async with uow() as repo:
            assert await repo.add(first)
        async with uow() as repo:
            assert await repo.add(retry) is False
        async with uow() as repo:
            assert await repo.get(retry.id) is None
            assert await repo.by_request(first.request_id) == first

    async def test_unknown_ids_are_none(self, uow: UnitOfWork) -> None:
        async with uow() as repo:
            assert await repo.get(uuid.uuid4()) is None
            assert await repo.by_request(f"req-{uuid.uuid4()}") is None
            assert await repo.by_order_ref(str(uuid.uuid4())) is None
            assert await repo.refund(f"refund-{uuid.uuid4()}") is None
            assert await repo.refunds_of(uuid.uuid4()) == []

    async def test_a_failed_unit_of_work_stores_nothing(self, uow: UnitOfWork) -> None:
        p = payment(moment(), session=False)
        with pytest.raises(RuntimeError):
            async with uow() as repo:
                assert await repo.add(p)
                raise RuntimeError("the use case failed after the insert")
        async with uow() as repo:
            assert await repo.get(p.id) is None

    # -- by_order_ref ---------------------------------------------------------------------------------

    async def test_by_order_ref_is_the_newest_payment_of_the_order(self, uow: UnitOfWork) -> None:
        at, order = moment(), str(uuid.uuid4())
        old = payment(at, order_ref=order)
        new = payment(at + timedelta(minutes=1), order_ref=order)
        other = payment(at + timedelta(minutes=2))
        await self.stored(uow, new, old, other)
        async with uow() as repo:
            assert await repo.by_order_ref(order) == new

    async def test_by_order_ref_breaks_a_tie_by_the_lowest_id(self, uow: UnitOfWork) -> None:
        at, order = moment(), str(uuid.uuid4())
        twins = sorted([payment(at, order_ref=order), payment(at, order_ref=order)], key=lambda p: p.id)
        await self.stored(uow, twins[1], twins[0])
        async with uow() as repo:
            found = await repo.by_order_ref(order)
        assert found is not None and found.id == twins[0].id

    # -- find_for_event -------------------------------------------------------------------------------

    async def test_find_for_event_by_our_id_the_session_or_the_provider_id(self, uow: UnitOfWork) -> None:
        p = payment(moment())
        p.provider_payment_id = f"pi_{p.id.hex}"
        await self.stored(uow, p)
        async with uow() as repo:
            assert await repo.find_for_event(str(p.id), None, None) == p
            assert await repo.find_for_event(None, p.session_id, None) == p
            assert await repo.find_for_event(None, None, p.provider_payment_id) == p
            assert await repo.find_for_event("not-a-uuid", p.session_id, None) == p  # a bad id is skipped
            assert await repo.find_for_event(str(uuid.uuid4()), "cs_unknown", "pi_unknown") is None
            assert await repo.find_for_event(None, None, None) is None

    async def test_find_for_event_tries_our_id_then_the_session_then_the_provider_id(
        self, uow: UnitOfWork
    ) -> None:
        at = moment()
        by_provider, by_session, by_id = payment(at), payment(at), payment(at)
        by_provider.provider_payment_id = f"pi_{by_provider.id.hex}"
        await self.stored(uow, by_provider, by_session, by_id)
        async with uow() as repo:
            found = await repo.find_for_event(
                str(by_id.id), by_session.session_id, by_provider.provider_payment_id
            )
            assert found is not None and found.id == by_id.id
            found = await repo.find_for_event(None, by_session.session_id, by_provider.provider_payment_id)
            assert found is not None and found.id == by_session.id

    # -- save, set_session ----------------------------------------------------------------------------

    async def test_save_stores_the_mutable_fields_and_the_change_time(self, uow: UnitOfWork) -> None:
        at = moment()
        p = payment(at, session=False)
        async with uow() as repo:
            assert await repo.add(p)
        changed = Payment(**{**p.__dict__})
        changed.status = PaymentStatus.SUCCEEDED
        changed.session_id, changed.payment_url = f"cs_{p.id.hex}", "https://pay.example.test/x"
        changed.provider_payment_id, changed.refund_id = "pi_x", "re_x"
        changed.settled_at, changed.settled_order_id = at + timedelta(minutes=2), "booking-1"
        # what a payment never changes is not saved
        changed.order_ref, changed.amount_minor, changed.currency = "another", 1, "USD"
        changed.customer_email, changed.expires_at = "else@example.test", None
        async with uow() as repo:
            await repo.save(changed, at + timedelta(minutes=3))
        assert changed.updated_at == at + timedelta(minutes=3)  # the caller's copy says so too
        async with uow() as repo:
            got = await repo.get(p.id)
        assert got == Payment(
            **{
                **p.__dict__,
                "status": PaymentStatus.SUCCEEDED,
                "session_id": f"cs_{p.id.hex}",
                "payment_url": "https://pay.example.test/x",
                "provider_payment_id": "pi_x",
                "refund_id": "re_x",
                "settled_at": at + timedelta(minutes=2),
                "settled_order_id": "booking-1",
                "updated_at": at + timedelta(minutes=3),
            }
        )

    async def test_set_session_only_on_a_payment_without_one(self, uow: UnitOfWork) -> None:
        at = moment()
        p = payment(at, session=False)
        async with uow() as repo:
            assert await repo.add(p)
        later = at + timedelta(seconds=5)
        async with uow() as repo:
            stored = await repo.set_session(p.id, "cs_first", "https://pay.example.test/first", later)
        assert stored is not None
        assert (stored.session_id, stored.payment_url, stored.updated_at) == (
            "cs_first",
            "https://pay.example.test/first",
            later,
        )
        async with uow() as repo:
            assert await repo.set_session(p.id, "cs_second", "https://pay.example.test/2", later) is None
            assert await repo.get(p.id) == stored
            assert await repo.set_session(uuid.uuid4(), "cs_nobody", "https://x.test", later) is None

    # -- settle -------------------------------------------------------------------------------------

    async def test_settle_only_a_paid_payment_nobody_settled(self, uow: UnitOfWork) -> None:
        at = moment()
        paid = payment(at, status=PaymentStatus.SUCCEEDED)
        refunded = payment(at, status=PaymentStatus.REFUNDED)
        for status in (PaymentStatus.PENDING, PaymentStatus.EXPIRED, PaymentStatus.FAILED):
            unpaid = payment(at, status=status)
            await self.stored(uow, unpaid)
            async with uow() as repo:
                assert await repo.settle(unpaid.id, "booking-1", at) is None
                assert await repo.get(unpaid.id) == unpaid
        await self.stored(uow, paid, refunded)
        later = at + timedelta(minutes=1)
        async with uow() as repo:
            settled = await repo.settle(paid.id, "booking-1", later)
            assert await repo.settle(refunded.id, "booking-2", later) is not None
        assert settled == Payment(
            **{**paid.__dict__, "settled_at": later, "settled_order_id": "booking-1", "updated_at": later}
        )
        async with uow() as repo:
            assert await repo.get(paid.id) == settled
            # settled already (for this order or another): nothing changes
            assert await repo.settle(paid.id, "booking-1", later + timedelta(minutes=1)) is None
            assert await repo.settle(paid.id, "booking-9", later + timedelta(minutes=1)) is None
            assert await repo.get(paid.id) == settled
            assert await repo.settle(uuid.uuid4(), "booking-1", later) is None

    async def test_settle_many_settles_each_paid_payment_once_in_one_call(self, uow: UnitOfWork) -> None:
        at = moment()
        paid, other, refunded = (payment(at, status=PaymentStatus.SUCCEEDED) for _ in range(3))
        refunded.status = PaymentStatus.REFUNDED
        unpaid = payment(at, status=PaymentStatus.PENDING)
        await self.stored(uow, paid, other, refunded, unpaid)
        later = at + timedelta(minutes=1)
        async with uow() as repo:
            assert await repo.settle(other.id, "booking-o", at) is not None  # settled before
        nobody = uuid.uuid4()
        asked = [
            (paid.id, "booking-p"),
            (paid.id, "booking-x"),  # a second entry of a payment: the first counts
            (other.id, "booking-o"),  # settled before with this order: a replay, it stands
            (refunded.id, "booking-r"),
            (unpaid.id, "booking-u"),  # never paid: not settled
            (nobody, "booking-n"),  # unknown
        ]
        async with uow() as repo:
            done = await repo.settle_many(asked, later)
        assert done == {(paid.id, "booking-p"), (other.id, "booking-o"), (refunded.id, "booking-r")}
        async with uow() as repo:
            assert await repo.get(paid.id) == Payment(
                **{**paid.__dict__, "settled_at": later, "settled_order_id": "booking-p", "updated_at": later}
            )
            got = await repo.get(other.id)
            assert got is not None and (got.settled_at, got.settled_order_id) == (at, "booking-o")
            assert await repo.get(unpaid.id) == unpaid
            # again: nothing changes, the same pairs stand
            assert await repo.settle_many(asked, later + timedelta(minutes=1)) == done
            assert (await repo.get(paid.id)).settled_at == later  # type: ignore[union-attr]

    # -- record_event ---------------------------------------------------------------------------------

    async def test_record_event_is_true_once_per_event_id(self, uow: UnitOfWork) -> None:
        p = payment(moment())
        await self.stored(uow, p)
        event_id = f"evt_{uuid.uuid4().hex}"
        async with uow() as repo:
            assert await repo.record_event(event_id, "checkout.session.completed", p.id) is True
        async with uow() as repo:
            assert await repo.record_event(event_id, "checkout.session.completed", p.id) is False
            assert await repo.record_event(f"evt_{uuid.uuid4().hex}", "charge.refunded", None) is True

    # -- apply_event ----------------------------------------------------------------------------------

    async def test_apply_event_records_it_once_and_applies_it_as_the_domain_does(
        self, uow: UnitOfWork
    ) -> None:
        at = moment()
        p = payment(at, session=False)
        await self.stored(uow, p)
        paid = GatewayEvent(
            f"evt_{uuid.uuid4().hex}",
            "checkout.session.completed",
            f"cs_{p.id.hex}",
            "pi_paid",
            str(p.id),
            PaymentStatus.SUCCEEDED,
        )
        later = at + timedelta(minutes=1)
        async with uow() as repo:
            applied = await repo.apply_event(p.id, paid, later)
        expected = Payment(
            **{
                **p.__dict__,
                "status": PaymentStatus.SUCCEEDED,
                "session_id": f"cs_{p.id.hex}",
                "provider_payment_id": "pi_paid",
                "updated_at": later,
            }
        )
        assert applied == (expected, True)
        async with uow() as repo:
            assert await repo.get(p.id) == expected
            # a replay: recorded already, nothing changes, the payment as stored
            assert await repo.apply_event(p.id, paid, later + timedelta(minutes=1)) == (expected, False)
            assert await repo.record_event(paid.id, paid.type, p.id) is False
            # a stale event never moves a payment backwards, nor replaces the ids it has; it is recorded
            stale = GatewayEvent(
                f"evt_{uuid.uuid4().hex}",
                "checkout.session.expired",
                "cs_other",
                "pi_other",
                str(p.id),
                PaymentStatus.EXPIRED,
            )
            again = await repo.apply_event(p.id, stale, later + timedelta(minutes=2))
            assert again == (
                Payment(**{**expected.__dict__, "updated_at": later + timedelta(minutes=2)}),
                True,
            )
            # an event with no status to apply is recorded and changes the change time only
            quiet = GatewayEvent(
                f"evt_{uuid.uuid4().hex}", "payment_intent.created", None, None, str(p.id), None
            )
            assert (await repo.apply_event(p.id, quiet, later + timedelta(minutes=3)))[1] is True  # type: ignore[index]
            # no payment with this id: nothing recorded
            nobody = GatewayEvent(
                f"evt_{uuid.uuid4().hex}", paid.type, None, None, None, PaymentStatus.SUCCEEDED
            )
            assert await repo.apply_event(uuid.uuid4(), nobody, later) is None
            assert await repo.record_event(nobody.id, nobody.type, None) is True

    # -- pending_past ---------------------------------------------------------------------------------

    async def test_pending_past_lists_open_sessions_whose_expiry_passed_oldest_first(
        self, uow: UnitOfWork
    ) -> None:
        at = moment()
        late = payment(at, expires_in=timedelta(minutes=-1))
        later = payment(at, expires_in=timedelta(minutes=-2))
        now_due = payment(at, expires_in=timedelta(0))
        await self.stored(
            uow,
            late,
            later,
            now_due,
            payment(at, expires_in=timedelta(seconds=1)),  # not yet
            payment(at, expires_in=None),  # no expiry
            payment(at, expires_in=timedelta(minutes=-3), session=False),  # no session to expire
            payment(at, expires_in=timedelta(minutes=-4), status=PaymentStatus.SUCCEEDED),
        )
        async with uow() as repo:
            assert [p.id for p in await repo.pending_past(at)] == [later.id, late.id, now_due.id]
        async with uow() as repo:
            assert [p.id for p in await repo.pending_past(at, limit=2)] == [later.id, late.id]

    # -- refunds --------------------------------------------------------------------------------------

    async def test_add_refund_stores_it_once_per_request_id(self, uow: UnitOfWork) -> None:
        at = moment()
        p = payment(at, status=PaymentStatus.SUCCEEDED)
        await self.stored(uow, p)
        first = refund(p, at, 1000)
        async with uow() as repo:
            assert await repo.add_refund(first) == first
        again = Refund(first.request_id, p.id, f"re_{uuid.uuid4().hex}", 2000, "EUR", "pending", at, at)
        async with uow() as repo:
            assert await repo.add_refund(again) == first  # a concurrent retry keeps the first row
            assert await repo.refund(first.request_id) == first
            assert await repo.refunds_of(p.id) == [first]

    async def test_refunds_of_a_payment_oldest_first(self, uow: UnitOfWork) -> None:
        at = moment()
        p, other = payment(at, status=PaymentStatus.SUCCEEDED), payment(at, status=PaymentStatus.SUCCEEDED)
        await self.stored(uow, p, other)
        second, first = refund(p, at + timedelta(minutes=2)), refund(p, at + timedelta(minutes=1))
        same_time = sorted(
            [refund(p, at + timedelta(minutes=3)), refund(p, at + timedelta(minutes=3))],
            key=lambda r: r.request_id,
        )
        async with uow() as repo:
            for r in (second, same_time[1], first, same_time[0], refund(other, at)):
                await repo.add_refund(r)
        async with uow() as repo:
            assert await repo.refunds_of(p.id) == [first, second, *same_time]

    async def test_set_refund_status_follows_the_provider(self, uow: UnitOfWork) -> None:
        at = moment()
        p = payment(at, status=PaymentStatus.SUCCEEDED)
        await self.stored(uow, p)
        r = refund(p, at, status="pending")
        async with uow() as repo:
            await repo.add_refund(r)
        async with uow() as repo:
            await repo.set_refund_status(r.provider_refund_id, "failed", at + timedelta(hours=1))
            await repo.set_refund_status(f"re_{uuid.uuid4().hex}", "succeeded", at)  # unknown: nothing
        async with uow() as repo:
            got = await repo.refund(r.request_id)
        assert got is not None and (got.status, got.updated_at) == ("failed", at + timedelta(hours=1))
        assert (got.created_at, got.amount_minor) == (r.created_at, r.amount_minor)

    # -- unsettled ------------------------------------------------------------------------------------

    async def test_unsettled_lists_succeeded_payments_nobody_settled_oldest_change_first(
        self, uow: UnitOfWork
    ) -> None:
        at = moment()
        old, older = payment(at, status=PaymentStatus.SUCCEEDED), payment(at, status=PaymentStatus.SUCCEEDED)
        old.updated_at, older.updated_at = at - timedelta(minutes=1), at - timedelta(minutes=2)
        exactly = payment(at, status=PaymentStatus.SUCCEEDED)
        recent = payment(at, status=PaymentStatus.SUCCEEDED)
        recent.updated_at = at + timedelta(seconds=1)
        settled = payment(at - timedelta(hours=1), status=PaymentStatus.SUCCEEDED)
        settled.settled_at, settled.settled_order_id = at - timedelta(hours=1), "booking-1"
        await self.stored(
            uow,
            old,
            older,
            exactly,
            recent,
            settled,
            payment(at - timedelta(hours=1), status=PaymentStatus.REFUNDED),
            payment(at - timedelta(hours=1), status=PaymentStatus.PENDING),
        )
        async with uow() as repo:
            assert [p.id for p in await repo.unsettled(at, 100)] == [older.id, old.id, exactly.id]
            assert [p.id for p in await repo.unsettled(at, 1)] == [older.id]

    # -- pending_to_check -----------------------------------------------------------------------------

    async def test_pending_to_check_claims_open_sessions_with_no_news_and_stamps_them(
        self, uow: UnitOfWork
    ) -> None:
        at = moment()
        quiet, quieter = payment(at - timedelta(minutes=1)), payment(at - timedelta(minutes=2))
        await self.stored(
            uow,
            quiet,
            quieter,
            payment(at + timedelta(seconds=1)),  # too new
            payment(at - timedelta(minutes=3), session=False),  # no session to ask about
            payment(at - timedelta(minutes=4), status=PaymentStatus.SUCCEEDED),
        )
        async with uow() as repo:
            assert [p.id for p in await repo.pending_to_check(at, limit=1)] == [quieter.id]
        async with uow() as repo:  # checked just now: not again before its next grace period
            assert [p.id for p in await repo.pending_to_check(at)] == [quiet.id]
        async with uow() as repo:
            assert await repo.pending_to_check(at) == []

    async def test_concurrent_pending_to_check_share_the_work(self, uow: UnitOfWork) -> None:
        """Two replicas' passes at once: each open session is claimed by one of them (skip locked)."""
        at = moment()
        due = [payment(at - timedelta(minutes=n + 1)) for n in range(4)]
        await self.stored(uow, *due)
        started, release = asyncio.Event(), asyncio.Event()

        async def holder() -> list[uuid.UUID]:
            async with uow() as repo:
                claimed = [p.id for p in await repo.pending_to_check(at, limit=2)]
                started.set()
                await release.wait()
                return claimed

        async def other() -> list[uuid.UUID]:
            await started.wait()
            async with uow() as repo:
                claimed = [p.id for p in await repo.pending_to_check(at, limit=10)]
            release.set()
            return claimed

        first, second = await asyncio.gather(holder(), other())
        assert sorted(first + second) == sorted(p.id for p in due)
        assert not set(first) & set(second)

    # -- a deleted account and the owner's data export ------------------------------------------------
    async def test_a_customers_payments_are_found_then_anonymised_by_address_digest_once(
        self, uow: UnitOfWork
    ) -> None:
        import hashlib
        from dataclasses import replace

        at = moment()
        address = f"{uuid.uuid4().hex[:10]}@example.test"
        account = uuid.uuid4()
        mine = replace(payment(at), customer_email=address)
        # made before the account changed its address: found by the account, not the digest
        by_ref = replace(
            payment(at + timedelta(seconds=1)), customer_email=f"old-{address}", customer_user_id=account
        )
        theirs = payment(at + timedelta(seconds=2))
        async with uow() as repo:
            for p in (mine, by_ref, theirs):
                assert await repo.add(p)
        async with uow() as repo:
            found = await repo.customer_payments([by_ref.order_ref], address)
            assert [p.id for p in found] == [mine.id, by_ref.id]
            assert await repo.customer_payments([], "") == []
        event = uuid.uuid4()
        digest = hashlib.sha256(address.upper().lower().encode()).hexdigest()
        async with uow() as repo:
            assert await repo.record_processed(event, "account.deleted", at)
            assert await repo.anonymise_customer(account, [digest], at + timedelta(hours=1)) == 2
        async with uow() as repo:
            assert not await repo.record_processed(event, "account.deleted", at)  # a redelivery
            gone, kept = await repo.get(mine.id), await repo.get(theirs.id)
            assert gone is not None and (gone.customer_email, gone.amount_minor) == ("", mine.amount_minor)
            assert kept is not None and kept.customer_email == theirs.customer_email
            old = await repo.get(by_ref.id)
            assert old is not None and (old.customer_email, old.customer_user_id) == ("", account)
            assert await repo.customer_payments([], address) == []
