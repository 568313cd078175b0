"""MobileService's staff booking for an owner: every check before any write (an owner invited, a pet
created or a slot held only once the slot is known free), then the hold confirmed as paid at the clinic
or its payment link mailed; only staff of the clinic get past the first step."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from edge.bff.service import MobileServicer, Stubs
from petpro.errors import Conflict, InvalidArgument, PermissionDenied
from petpro_api.auth.v1 import auth_pb2
from petpro_api.booking.v1 import booking_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.mobile.v1 import mobile_pb2
from petpro_api.notification.v1 import notification_pb2
from petpro_api.payment.v1 import payment_pb2

CLINIC, SERVICE, STAFF, OWNER = (str(uuid.uuid4()) for _ in range(4))
SLOT = timestamp_pb2.Timestamp(seconds=1_900_000_800)  # 2030-03-17 16:26:40 UTC


@dataclass
class Mesh:
    """The internal services the BFF calls, recording each write."""

    calls: list[str] = field(default_factory=list)
    staff: bool = True
    owner_exists: bool = False
    slot_free: bool = True

    async def ValidateToken(self, request: Any) -> auth_pb2.ValidateTokenResponse:
        return auth_pb2.ValidateTokenResponse(
            user_id=STAFF,
            email="desk@clinic.example",
            roles=[auth_pb2.ROLE_CLINIC_STAFF] if self.staff else [auth_pb2.ROLE_OWNER],
            clinic_ids=[CLINIC] if self.staff else [],
            expires_at=timestamp_pb2.Timestamp(seconds=int(time.time()) + 600),
        )

    async def InviteOwner(self, request: auth_pb2.InviteOwnerRequest) -> auth_pb2.InviteOwnerResponse:
        user = auth_pb2.User(user_id=OWNER, email=request.email, name=request.name or "Ann")
        if self.owner_exists:
            return auth_pb2.InviteOwnerResponse(user=user)
        if request.validate_only:
            return auth_pb2.InviteOwnerResponse(invited=True)
        self.calls.append("InviteOwner")
        self.owner_exists = True
        return auth_pb2.InviteOwnerResponse(user=user, invited=True)

    async def GetService(self, request: Any) -> booking_pb2.GetServiceResponse:
        return booking_pb2.GetServiceResponse(
            service=booking_pb2.Service(service_id=SERVICE, clinic_id=CLINIC, name="Check-up")
        )

    async def GetClinic(self, request: Any) -> booking_pb2.GetClinicResponse:
        return booking_pb2.GetClinicResponse(
            clinic=booking_pb2.Clinic(clinic_id=CLINIC, name="Vets", time_zone="Europe/Berlin")
        )

    async def GetAvailability(self, request: Any) -> booking_pb2.GetAvailabilityResponse:
        return booking_pb2.GetAvailabilityResponse(
            slots=[booking_pb2.Slot(start_time=SLOT, free=self.slot_free, remaining=int(self.slot_free))]
        )

    async def ListPets(self, request: Any) -> booking_pb2.ListPetsResponse:
        return booking_pb2.ListPetsResponse()

    async def CreatePet(self, request: Any) -> booking_pb2.CreatePetResponse:
        self.calls.append("CreatePet")
        return booking_pb2.CreatePetResponse(pet=booking_pb2.Pet(pet_id=str(uuid.uuid4())))

    async def ReserveSlot(self, request: booking_pb2.ReserveSlotRequest) -> booking_pb2.ReserveSlotResponse:
        self.calls.append("ReserveSlot")
        assert request.owner_user_id == OWNER
        return booking_pb2.ReserveSlotResponse(
            reservation=booking_pb2.Reservation(
                lock_id=str(uuid.uuid4()),
                owner_user_id=OWNER,
                state=booking_pb2.RESERVATION_STATE_HELD,
                service_id=SERVICE,
                slot_start_time=SLOT,
                expires_at=SLOT,
                amount=money_pb2.Money(amount_minor=4550, currency="EUR"),
            )
        )

    async def ConfirmUnpaidBooking(self, request: Any) -> booking_pb2.ConfirmUnpaidBookingResponse:
        self.calls.append("ConfirmUnpaidBooking")
        return booking_pb2.ConfirmUnpaidBookingResponse(booking=booking_pb2.Booking(pay_at_clinic=True))

    async def CreatePaymentSession(self, request: Any) -> payment_pb2.CreatePaymentSessionResponse:
        self.calls.append("CreatePaymentSession")
        return payment_pb2.CreatePaymentSessionResponse(
            payment_url=f"https://pay.example/{request.order_ref}"
        )

    async def SendPaymentRequest(
        self, request: notification_pb2.SendPaymentRequestRequest
    ) -> notification_pb2.SendPaymentRequestResponse:
        self.calls.append(f"SendPaymentRequest {request.email} {request.amount}")
        return notification_pb2.SendPaymentRequestResponse(sent=True)


class Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer token"),)


def servicer(mesh: Mesh) -> MobileServicer:
    return MobileServicer(Stubs(auth=mesh, booking=mesh, payment=mesh, notification=mesh))  # type: ignore[arg-type]


def request(payment: int, **kw: Any) -> mobile_pb2.StaffCreateBookingRequest:
    r = mobile_pb2.StaffCreateBookingRequest(
        clinic_id=CLINIC, service_id=SERVICE, slot=SLOT, owner_email="cleo@example.org", payment=payment, **kw
    )
    if not r.pet_id:
        r.new_pet.CopyFrom(mobile_pb2.StaffNewPet(name="Mimi", species=booking_pb2.SPECIES_CAT))
    return r


async def test_a_new_owner_booked_to_pay_at_the_clinic() -> None:
    mesh = Mesh()
    out = await servicer(mesh).StaffCreateBooking(
        request(mobile_pb2.STAFF_PAYMENT_PAY_AT_CLINIC, owner_name="Cleo"), Context()
    )
    assert (out.status, out.owner_invited, out.booking.pay_at_clinic) == ("CONFIRMED", True, True)
    assert mesh.calls == ["InviteOwner", "CreatePet", "ReserveSlot", "ConfirmUnpaidBooking"]


async def test_a_payment_link_is_opened_and_mailed_to_the_owner() -> None:
    mesh = Mesh(owner_exists=True)
    out = await servicer(mesh).StaffCreateBooking(request(mobile_pb2.STAFF_PAYMENT_PAYMENT_LINK), Context())
    assert out.status == "PENDING_PAYMENT" and out.payment_url.startswith("https://pay.example/")
    assert mesh.calls == [
        "CreatePet",
        "ReserveSlot",
        "CreatePaymentSession",
        "SendPaymentRequest cleo@example.org 45.50 EUR",
    ]


async def test_a_taken_slot_or_a_strange_pet_writes_nothing() -> None:
    mesh = Mesh(slot_free=False)
    with pytest.raises(Conflict):
        await servicer(mesh).StaffCreateBooking(
            request(mobile_pb2.STAFF_PAYMENT_PAY_AT_CLINIC, owner_name="Cleo"), Context()
        )
    with pytest.raises(InvalidArgument) as exc:  # a new owner has no pets yet
        await servicer(Mesh()).StaffCreateBooking(
            request(mobile_pb2.STAFF_PAYMENT_PAY_AT_CLINIC, owner_name="Cleo", pet_id=str(uuid.uuid4())),
            Context(),
        )
    assert [v.field for v in exc.value.violations] == ["pet_id"]
    assert mesh.calls == []


async def test_only_staff_of_the_clinic_book_or_move() -> None:
    mesh = Mesh(staff=False)
    with pytest.raises(PermissionDenied):
        await servicer(mesh).StaffCreateBooking(request(mobile_pb2.STAFF_PAYMENT_PAY_AT_CLINIC), Context())
    with pytest.raises(PermissionDenied):
        await servicer(mesh).StaffMoveBooking(
            mobile_pb2.StaffMoveBookingRequest(clinic_id=CLINIC, booking_id=str(uuid.uuid4())), Context()
        )
    assert mesh.calls == []
