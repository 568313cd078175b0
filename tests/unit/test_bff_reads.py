"""MobileService's reads are reads: GetReservation of a held reservation reads the checkout page
from its payment (PaymentService.GetPayment by order reference) and never opens a payment session.
Fakes of the upstream stubs record every call."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from edge.bff.service import MobileServicer, Stubs
from petpro_api.auth.v1 import auth_pb2
from petpro_api.booking.v1 import booking_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.mobile.v1 import mobile_pb2
from petpro_api.payment.v1 import payment_pb2

USER = str(uuid.uuid4())
LOCK = str(uuid.uuid4())


@dataclass
class Recorder:
    calls: list[str] = field(default_factory=list)


class FakeAuth:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def ValidateToken(self, request: auth_pb2.ValidateTokenRequest) -> auth_pb2.ValidateTokenResponse:
        self.rec.calls.append("ValidateToken")
        expires = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
        return auth_pb2.ValidateTokenResponse(
            user_id=USER, email="ann@example.com", name="Ann", expires_at=expires, locale="de-AT"
        )


class FakeBooking:
    def __init__(self, rec: Recorder, state: int) -> None:
        self.rec, self.state = rec, state

    async def GetReservation(
        self, request: booking_pb2.GetReservationRequest
    ) -> booking_pb2.GetReservationResponse:
        self.rec.calls.append("GetReservation")
        return booking_pb2.GetReservationResponse(
            reservation=booking_pb2.Reservation(
                lock_id=request.lock_id,
                owner_user_id=USER,
                state=self.state,
                service_id=str(uuid.uuid4()),
                amount=money_pb2.Money(amount_minor=4550, currency="EUR"),
            )
        )

    async def GetService(self, request: Any) -> Any:
        self.rec.calls.append("GetService")
        raise AssertionError("a read must not look up the service")


class FakePayment:
    def __init__(self, rec: Recorder, payment: payment_pb2.Payment | None) -> None:
        self.rec, self.payment = rec, payment
        self.requests: list[payment_pb2.GetPaymentRequest] = []

    async def GetPayment(self, request: payment_pb2.GetPaymentRequest) -> payment_pb2.GetPaymentResponse:
        self.rec.calls.append("GetPayment")
        self.requests.append(request)
        if self.payment is None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.NOT_FOUND,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                "no payment for this order",
            )
        return payment_pb2.GetPaymentResponse(payment=self.payment)

    async def CreatePaymentSession(self, request: Any) -> Any:
        self.rec.calls.append("CreatePaymentSession")
        raise AssertionError("a read must not create a payment session")


class Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer token"),)


def _servicer(
    state: int, payment: payment_pb2.Payment | None
) -> tuple[MobileServicer, Recorder, FakePayment]:
    rec = Recorder()
    pay = FakePayment(rec, payment)
    stubs = Stubs(
        auth=FakeAuth(rec),
        booking=FakeBooking(rec, state),
        payment=pay,  # type: ignore[arg-type]
        notification=None,
    )  # type: ignore[arg-type]
    return MobileServicer(stubs), rec, pay


async def _get(servicer: MobileServicer) -> mobile_pb2.GetReservationResponse:
    return await servicer.GetReservation(mobile_pb2.GetReservationRequest(lock_id=LOCK), Context())


PENDING = payment_pb2.Payment(
    payment_id=str(uuid.uuid4()),
    order_ref=LOCK,
    payment_url="https://pay.example/cs_1",
    status=payment_pb2.PAYMENT_STATUS_PENDING,
)


async def test_held_reservation_reads_the_checkout_page_from_its_payment() -> None:
    servicer, rec, pay = _servicer(booking_pb2.RESERVATION_STATE_HELD, PENDING)
    r = await _get(servicer)
    assert r.status == "PENDING_PAYMENT" and r.payment_url == "https://pay.example/cs_1"
    assert rec.calls == ["ValidateToken", "GetReservation", "GetPayment"]
    assert pay.requests[0].order_ref == LOCK and not pay.requests[0].payment_id


@pytest.mark.parametrize("status", [payment_pb2.PAYMENT_STATUS_SUCCEEDED, payment_pb2.PAYMENT_STATUS_EXPIRED])
async def test_a_payment_no_longer_open_has_no_checkout_page(status: int) -> None:
    closed = payment_pb2.Payment()
    closed.CopyFrom(PENDING)
    closed.status = status
    servicer, _, _ = _servicer(booking_pb2.RESERVATION_STATE_HELD, closed)
    assert (await _get(servicer)).payment_url == ""


async def test_a_paid_hold_awaiting_its_confirmation_reads_its_payment_once() -> None:
    paid = payment_pb2.Payment()
    paid.CopyFrom(PENDING)
    paid.status = payment_pb2.PAYMENT_STATUS_SUCCEEDED
    servicer, rec, _ = _servicer(booking_pb2.RESERVATION_STATE_HELD, paid)
    for _ in range(3):  # the client polls until CONFIRMED
        assert (await _get(servicer)).payment_url == ""
    assert rec.calls.count("GetPayment") == 1


async def test_a_pending_payment_is_read_on_every_poll() -> None:
    servicer, rec, _ = _servicer(booking_pb2.RESERVATION_STATE_HELD, PENDING)
    for _ in range(2):
        assert (await _get(servicer)).payment_url == "https://pay.example/cs_1"
    assert rec.calls.count("GetPayment") == 2


async def test_held_reservation_without_a_payment_reads_no_page_and_writes_nothing() -> None:
    servicer, rec, _ = _servicer(booking_pb2.RESERVATION_STATE_HELD, None)
    assert (await _get(servicer)).payment_url == ""
    assert "CreatePaymentSession" not in rec.calls


async def test_confirmed_reservation_needs_no_payment_read() -> None:
    servicer, rec, _ = _servicer(booking_pb2.RESERVATION_STATE_CONFIRMED, PENDING)
    r = await _get(servicer)
    assert r.status == "CONFIRMED" and r.payment_url == ""
    assert rec.calls == ["ValidateToken", "GetReservation"]


class LongPollBooking(FakeBooking):
    """Booking answering a long-poll: records each request and the deadline it was given."""

    def __init__(self, rec: Recorder, state: int) -> None:
        super().__init__(rec, state)
        self.asked: list[tuple[booking_pb2.GetReservationRequest, float | None]] = []

    async def GetReservation(  # type: ignore[override]
        self, request: booking_pb2.GetReservationRequest, timeout: float | None = None
    ) -> booking_pb2.GetReservationResponse:
        self.asked.append((request, timeout))
        return await super().GetReservation(request)


class Deadline(Context):
    def __init__(self, left: float) -> None:
        self.left = left

    def time_remaining(self) -> float:
        return self.left


@pytest.mark.parametrize(("left", "wait"), [(34.8, 25), (9.8, 7)])
async def test_a_long_poll_is_booking_s_own_within_the_callers_deadline(left: float, wait: int) -> None:
    """GetReservation with wait_seconds asks booking to wait (for this owner's reservation only), never
    past the edge's own deadline, and gives the call the time to; a confirmed answer reads no payment."""
    rec = Recorder()
    booking = LongPollBooking(rec, booking_pb2.RESERVATION_STATE_CONFIRMED)
    stubs = Stubs(auth=FakeAuth(rec), booking=booking, payment=FakePayment(rec, PENDING), notification=None)  # type: ignore[arg-type]
    got = await MobileServicer(stubs).GetReservation(
        mobile_pb2.GetReservationRequest(lock_id=LOCK, wait_seconds=25), Deadline(left)
    )
    assert got.status == "CONFIRMED"
    [(asked, timeout)] = booking.asked
    assert (asked.lock_id, asked.wait_seconds, asked.owner_user_id) == (LOCK, wait, USER)
    assert timeout is not None and wait < timeout <= left
    assert rec.calls == ["ValidateToken", "GetReservation"]


async def test_a_read_without_wait_asks_booking_for_no_wait() -> None:
    rec = Recorder()
    booking = LongPollBooking(rec, booking_pb2.RESERVATION_STATE_CONFIRMED)
    stubs = Stubs(auth=FakeAuth(rec), booking=booking, payment=FakePayment(rec, PENDING), notification=None)  # type: ignore[arg-type]
    await _get(MobileServicer(stubs))
    [(asked, timeout)] = booking.asked
    assert asked.wait_seconds == 0 and timeout is None


class WaitingBooking(LongPollBooking):
    """Booking whose long-poll waits until cancelled; a read without wait answers at once."""

    def __init__(self, rec: Recorder, state: int) -> None:
        super().__init__(rec, state)
        self.waiting = asyncio.Event()
        self.cancelled = False

    async def GetReservation(  # type: ignore[override]
        self, request: booking_pb2.GetReservationRequest, timeout: float | None = None
    ) -> booking_pb2.GetReservationResponse:
        self.asked.append((request, timeout))
        if request.wait_seconds:
            self.waiting.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return await FakeBooking.GetReservation(self, request)


async def test_a_long_poll_in_flight_answers_at_once_when_the_edge_shuts_down() -> None:
    """The drain need not wait for the longest wait: at shutdown the long-poll is cancelled at booking
    and the reservation read as it is."""
    rec = Recorder()
    booking = WaitingBooking(rec, booking_pb2.RESERVATION_STATE_HELD)
    stubs = Stubs(auth=FakeAuth(rec), booking=booking, payment=FakePayment(rec, PENDING), notification=None)  # type: ignore[arg-type]
    servicer = MobileServicer(stubs)
    poll = asyncio.ensure_future(
        servicer.GetReservation(
            mobile_pb2.GetReservationRequest(lock_id=LOCK, wait_seconds=25), Deadline(34.8)
        )
    )
    await booking.waiting.wait()
    servicer.close()
    got = await poll
    assert (got.status, got.payment_url) == ("PENDING_PAYMENT", PENDING.payment_url)
    assert booking.cancelled
    assert [asked.wait_seconds for asked, _ in booking.asked] == [25, 0]
