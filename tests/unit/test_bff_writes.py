"""MobileService.CreateBooking: reserve, then open the checkout page; the service's name (the checkout
line item) comes with the reservation (no GetService), and from an older booking that does not send it
it is looked up once per service, not once per booking."""

from __future__ import annotations

import uuid
from typing import Any

from edge.bff.service import MobileServicer, Stubs
from petpro_api.booking.v1 import booking_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.mobile.v1 import mobile_pb2
from petpro_api.payment.v1 import payment_pb2
from tests.unit.test_bff_reads import USER, Context, FakeAuth, Recorder

SERVICE = str(uuid.uuid4())


class FakeBooking:
    def __init__(self, rec: Recorder, names: bool = False) -> None:
        self.rec = rec
        self.name = "Checkup"
        self.names = names  # the reservation carries the service's name (booking since issue 24)
        self.reserved: list[booking_pb2.ReserveSlotRequest] = []

    async def ReserveSlot(self, request: booking_pb2.ReserveSlotRequest) -> booking_pb2.ReserveSlotResponse:
        self.rec.calls.append("ReserveSlot")
        self.reserved.append(request)
        return booking_pb2.ReserveSlotResponse(
            reservation=booking_pb2.Reservation(
                lock_id=str(uuid.uuid4()),
                owner_user_id=USER,
                state=booking_pb2.RESERVATION_STATE_HELD,
                service_id=request.service_id,
                amount=money_pb2.Money(amount_minor=4550, currency="EUR"),
                service_name=self.name if self.names else "",
            )
        )

    async def GetService(self, request: booking_pb2.GetServiceRequest) -> booking_pb2.GetServiceResponse:
        self.rec.calls.append("GetService")
        return booking_pb2.GetServiceResponse(
            service=booking_pb2.Service(service_id=request.service_id, name=self.name)
        )


class FakePayment:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.descriptions: list[str] = []

    async def CreatePaymentSession(self, request: payment_pb2.CreatePaymentSessionRequest) -> Any:
        self.rec.calls.append("CreatePaymentSession")
        self.descriptions.append(request.description)
        return payment_pb2.CreatePaymentSessionResponse(
            payment_url=f"https://pay.example/{request.order_ref}"
        )


def _servicer(
    name_seconds: float = 60.0, names: bool = False
) -> tuple[MobileServicer, Recorder, FakeBooking, FakePayment]:
    rec = Recorder()
    booking, pay = FakeBooking(rec, names), FakePayment(rec)
    stubs = Stubs(auth=FakeAuth(rec), booking=booking, payment=pay, notification=None)  # type: ignore[arg-type]
    return MobileServicer(stubs, service_name_seconds=name_seconds), rec, booking, pay


async def _book(servicer: MobileServicer) -> mobile_pb2.CreateBookingResponse:
    return await servicer.CreateBooking(
        mobile_pb2.CreateBookingRequest(service_id=SERVICE, pet_id=str(uuid.uuid4())), Context()
    )


async def test_the_service_name_is_looked_up_once_for_many_bookings() -> None:
    servicer, rec, _, pay = _servicer()
    for _ in range(3):
        r = await _book(servicer)
        assert r.status == "PENDING_PAYMENT" and r.payment_url.startswith("https://pay.example/")
    assert rec.calls.count("GetService") == 1
    assert rec.calls.count("ReserveSlot") == rec.calls.count("CreatePaymentSession") == 3
    assert pay.descriptions == ["Checkup"] * 3


async def test_a_renamed_service_reaches_the_checkout_once_the_name_expires() -> None:
    servicer, rec, booking, pay = _servicer(name_seconds=0)  # nothing kept
    await _book(servicer)
    booking.name = "Annual checkup"
    await _book(servicer)
    assert pay.descriptions == ["Checkup", "Annual checkup"]
    assert rec.calls.count("GetService") == 2


async def test_the_reservation_names_its_service_so_no_lookup_is_made() -> None:
    servicer, rec, booking, pay = _servicer(names=True)
    await _book(servicer)
    booking.name = "Annual checkup"  # booking's answer is its catalog's current name
    await _book(servicer)
    assert pay.descriptions == ["Checkup", "Annual checkup"]
    assert "GetService" not in rec.calls


async def test_the_hold_carries_who_the_owner_is_and_their_language() -> None:
    servicer, _, booking, _ = _servicer()
    await _book(servicer)
    [req] = booking.reserved
    assert (req.owner_email, req.owner_name, req.owner_locale) == ("ann@example.com", "Ann", "de-AT")
