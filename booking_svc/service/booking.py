"""The BookingService servicer: request → command → use case → response."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import grpc

from booking_svc.domain import Actor, Booking, BookingState, ClinicSchedule, Reservation
from booking_svc.handlers import (
    CatalogHandlers,
    LifecycleHandlers,
    OwnerHandlers,
    PetDraft,
    PetHandlers,
    RefundHandlers,
    ReservationHandlers,
    ReserveCommand,
)
from booking_svc.service.convert import (
    booking_pb,
    clinic_pb,
    pet_pb,
    provider_ref,
    reservation_pb,
    service_pb,
)
from booking_svc.service.refusals import TakenSlots
from petpro.convert import dt, ts, uid
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc

# a long-poll answers this long before the caller's deadline (time for the last read and the answer)
DEADLINE_MARGIN_SECONDS = 1.0


class BookingServicer(booking_pb2_grpc.BookingServiceServicer):
    """BookingService: each RPC maps its request to the use case of its family and the result back."""

    def __init__(
        self,
        catalog: CatalogHandlers,
        pets: PetHandlers,
        reservations: ReservationHandlers,
        lifecycle: LifecycleHandlers,
        refunds: RefundHandlers,
        owners: OwnerHandlers | None = None,
        taken: TakenSlots | None = None,
    ) -> None:
        self.taken = taken  # ReserveSlot's early refusals (service/refusals.py); None: none
        self.catalog = catalog
        self.pets = pets
        self.reservations = reservations
        self.lifecycle = lifecycle
        self.refunds = refunds
        self.owners = owners

    async def ListClinics(
        self, request: booking_pb2.ListClinicsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListClinicsResponse:
        rows, token = await self.catalog.list_clinics(request.page_size, request.page_token)
        return booking_pb2.ListClinicsResponse(clinics=[clinic_pb(c) for c in rows], next_page_token=token)

    async def GetClinic(
        self, request: booking_pb2.GetClinicRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetClinicResponse:
        return booking_pb2.GetClinicResponse(
            clinic=clinic_pb(await self.catalog.get_clinic(uid(request.clinic_id, "clinic_id")))
        )

    async def ListServices(
        self, request: booking_pb2.ListServicesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListServicesResponse:
        rows, token = await self.catalog.list_services(
            uid(request.clinic_id, "clinic_id"), request.page_size, request.page_token
        )
        return booking_pb2.ListServicesResponse(services=[service_pb(s) for s in rows], next_page_token=token)

    async def GetService(
        self, request: booking_pb2.GetServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetServiceResponse:
        svc, _ = await self.catalog.get_service(uid(request.service_id, "service_id"))
        return booking_pb2.GetServiceResponse(service=service_pb(svc))

    async def GetAvailability(
        self, request: booking_pb2.GetAvailabilityRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetAvailabilityResponse:
        svc, clinic, slots = await self.catalog.availability(
            uid(request.service_id, "service_id"),
            request.date,
            provider_id=uid(request.provider_id, "provider_id") if request.provider_id else None,
            pet_id=uid(request.pet_id, "pet_id") if request.pet_id else None,
        )
        return booking_pb2.GetAvailabilityResponse(
            service_id=str(svc.id),
            date=request.date,
            time_zone=clinic.time_zone,
            slots=[
                booking_pb2.Slot(
                    start_time=ts(s.start),
                    end_time=ts(s.end),
                    free=s.remaining > 0,
                    remaining=s.remaining,
                    free_providers=[provider_ref(p) for p in s.providers],
                )
                for s in slots
            ],
        )

    async def ListAvailableDays(
        self, request: booking_pb2.ListAvailableDaysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListAvailableDaysResponse:
        svc, clinic, days = await self.catalog.available_days(
            uid(request.service_id, "service_id"),
            request.month,
            provider_id=uid(request.provider_id, "provider_id") if request.provider_id else None,
            pet_id=uid(request.pet_id, "pet_id") if request.pet_id else None,
        )
        return booking_pb2.ListAvailableDaysResponse(
            service_id=str(svc.id),
            month=request.month,
            time_zone=clinic.time_zone,
            days=[booking_pb2.AvailableDay(date=d.isoformat(), has_free_slot=free) for d, free in days],
        )

    async def _sched(
        self, clinic_id: uuid.UUID, provider_id: uuid.UUID | None, items: tuple[uuid.UUID, ...]
    ) -> ClinicSchedule | None:
        """The clinic's schedule for the names of an assignment (None when there is none): the memo's
        copy when it knows them all (a rename shows with the next catalog read), else loaded."""
        if provider_id is None and not items:
            return None
        cached = self.catalog.memo.peek(("schedule", clinic_id))
        if cached is not None:
            sched: ClinicSchedule = cached[1]
            known = {r.id for r in sched.resources}
            if (provider_id is None or provider_id in sched.providers) and known.issuperset(items):
                return sched
        return await self.catalog.schedule(clinic_id)

    async def _reservation_pb(self, res: Reservation) -> booking_pb2.Reservation:
        out = reservation_pb(res, await self._sched(res.clinic_id, res.provider_id, res.resource_ids))
        # the service's name from the catalog memo, no round trip (ReserveSlot has just used it): the
        # caller needs no GetService for the checkout's line item
        cached = self.catalog.cached_service(res.service_id)
        if cached is not None:
            out.service_name = cached[1][0].name
        return out

    async def _booking_pb(self, b: Booking, now: datetime | None = None) -> booking_pb2.Booking:
        return booking_pb(b, now, await self._sched(b.clinic_id, b.provider_id, b.resource_ids))

    async def CreatePet(
        self, request: booking_pb2.CreatePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.CreatePetResponse:
        species = booking_pb2.Species.Name(request.species).removeprefix("SPECIES_")
        pet = await self.pets.create_pet(
            uid(request.owner_user_id, "owner_user_id"),
            request.name,
            species,
            request.breed if request.HasField("breed") else None,
            request.birth_date,
        )
        return booking_pb2.CreatePetResponse(pet=pet_pb(pet))

    async def ListPets(
        self, request: booking_pb2.ListPetsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListPetsResponse:
        rows, token = await self.pets.list_pets(
            uid(request.owner_user_id, "owner_user_id"), request.page_size, request.page_token
        )
        return booking_pb2.ListPetsResponse(pets=[pet_pb(p) for p in rows], next_page_token=token)

    async def GetPet(
        self, request: booking_pb2.GetPetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetPetResponse:
        pet = await self.pets.get_pet(
            uid(request.owner_user_id, "owner_user_id"), uid(request.pet_id, "pet_id")
        )
        return booking_pb2.GetPetResponse(pet=pet_pb(pet))

    async def UpdatePet(
        self, request: booking_pb2.UpdatePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.UpdatePetResponse:
        p = request.pet
        pet = await self.pets.update_pet(
            uid(request.owner_user_id, "owner_user_id"),
            uid(p.pet_id, "pet.pet_id"),
            PetDraft(
                paths=list(request.update_mask.paths) or _set_pet_paths(p),
                name=p.name,
                species=booking_pb2.Species.Name(p.species).removeprefix("SPECIES_") if p.species else "",
                breed=p.breed,
                birth_date=p.birth_date,
                weight_kg=p.weight_kg if p.HasField("weight_kg") else None,
                notes=p.notes,
            ),
            p.etag,
        )
        return booking_pb2.UpdatePetResponse(pet=pet_pb(pet))

    async def ArchivePet(
        self, request: booking_pb2.ArchivePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ArchivePetResponse:
        pet = await self.pets.archive_pet(
            uid(request.owner_user_id, "owner_user_id"), uid(request.pet_id, "pet_id"), request.etag
        )
        return booking_pb2.ArchivePetResponse(pet=pet_pb(pet))

    async def ExportOwnerData(
        self, request: booking_pb2.ExportOwnerDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ExportOwnerDataResponse:
        assert self.owners is not None
        data, order_refs = await self.owners.export(uid(request.owner_user_id, "owner_user_id"))
        out = booking_pb2.ExportOwnerDataResponse(order_refs=order_refs)
        out.data.update(data)
        return out

    async def ReserveSlot(
        self, request: booking_pb2.ReserveSlotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ReserveSlotResponse:
        cmd = ReserveCommand(
            request_id=request.request_id,
            owner_user_id=uid(request.owner_user_id, "owner_user_id"),
            owner_email=request.owner_email,
            owner_name=request.owner_name,
            owner_locale=request.owner_locale,
            service_id=uid(request.service_id, "service_id"),
            pet_id=uid(request.pet_id, "pet_id"),
            start=dt(request.slot_start_time),
            provider_id=uid(request.provider_id, "provider_id") if request.provider_id else None,
        )
        if self.taken is not None:
            res = await self.taken.reserve(cmd, self.reservations.reserve)
        else:
            res = await self.reservations.reserve(cmd)
        return booking_pb2.ReserveSlotResponse(reservation=await self._reservation_pb(res))

    async def GetReservation(
        self, request: booking_pb2.GetReservationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetReservationResponse:
        wait = float(request.wait_seconds)
        if wait > 0:  # never past the caller's deadline: answer with what there is a little before it
            left = context.time_remaining()
            if left is not None:
                wait = min(wait, left - DEADLINE_MARGIN_SECONDS)
        res = await self.reservations.await_reservation(
            uid(request.lock_id, "lock_id"),
            uid(request.owner_user_id, "owner_user_id") if request.owner_user_id else None,
            timedelta(seconds=max(wait, 0.0)),
        )
        return booking_pb2.GetReservationResponse(reservation=await self._reservation_pb(res))

    async def ConfirmBooking(
        self, request: booking_pb2.ConfirmBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ConfirmBookingResponse:
        b = await self.reservations.confirm(
            uid(request.reservation_lock_id, "reservation_lock_id"), uid(request.payment_id, "payment_id")
        )
        return booking_pb2.ConfirmBookingResponse(
            booking_id=str(b.id), booking=await self._booking_pb(b, self.lifecycle.clock())
        )

    async def GetBooking(
        self, request: booking_pb2.GetBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetBookingResponse:
        return booking_pb2.GetBookingResponse(
            booking=await self._booking_pb(
                await self.lifecycle.get_booking(uid(request.booking_id, "booking_id"), None),
                self.lifecycle.clock(),
            )
        )

    async def CancelBooking(
        self, request: booking_pb2.CancelBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.CancelBookingResponse:
        booking_id = uid(request.booking_id, "booking_id")
        if request.WhichOneof("actor") == "clinic_id":
            b = await self.lifecycle.cancel(
                request.request_id,
                booking_id,
                Actor.CLINIC,
                request.reason,
                clinic=uid(request.clinic_id, "clinic_id"),
            )
        else:
            b = await self.lifecycle.cancel(
                request.request_id,
                booking_id,
                Actor.OWNER,
                request.reason,
                owner=uid(request.owner_user_id, "owner_user_id"),
            )
        if self.taken is not None:
            self.taken.forget()  # its slot is free again
        return booking_pb2.CancelBookingResponse(booking=await self._booking_pb(b, self.lifecycle.clock()))

    async def RescheduleBooking(
        self, request: booking_pb2.RescheduleBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.RescheduleBookingResponse:
        b = await self.lifecycle.reschedule(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.owner_user_id, "owner_user_id"),
            dt(request.slot_start_time),
        )
        if self.taken is not None:
            self.taken.forget()  # its old slot is free again
        return booking_pb2.RescheduleBookingResponse(
            booking=await self._booking_pb(b, self.lifecycle.clock())
        )

    async def ConfirmUnpaidBooking(
        self, request: booking_pb2.ConfirmUnpaidBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ConfirmUnpaidBookingResponse:
        b = await self.reservations.confirm_unpaid(
            uid(request.reservation_lock_id, "reservation_lock_id"), uid(request.clinic_id, "clinic_id")
        )
        return booking_pb2.ConfirmUnpaidBookingResponse(
            booking=await self._booking_pb(b, self.lifecycle.clock())
        )

    async def MoveBooking(
        self, request: booking_pb2.MoveBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.MoveBookingResponse:
        b = await self.lifecycle.move(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.clinic_id, "clinic_id"),
            dt(request.slot_start_time) if request.HasField("slot_start_time") else None,
            uid(request.provider_id, "provider_id") if request.provider_id else None,
            tuple(uid(r, f"resource_ids[{i}]") for i, r in enumerate(request.resource_ids)),
        )
        if self.taken is not None:
            self.taken.forget()  # its old slot is free again
        return booking_pb2.MoveBookingResponse(booking=await self._booking_pb(b, self.lifecycle.clock()))

    async def CompleteBooking(
        self, request: booking_pb2.CompleteBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.CompleteBookingResponse:
        b = await self.lifecycle.record_outcome(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.clinic_id, "clinic_id"),
            BookingState.COMPLETED,
        )
        return booking_pb2.CompleteBookingResponse(booking=await self._booking_pb(b, self.lifecycle.clock()))

    async def MarkNoShow(
        self, request: booking_pb2.MarkNoShowRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.MarkNoShowResponse:
        b = await self.lifecycle.record_outcome(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.clinic_id, "clinic_id"),
            BookingState.NO_SHOW,
        )
        return booking_pb2.MarkNoShowResponse(booking=await self._booking_pb(b, self.lifecycle.clock()))

    async def ListPendingRefunds(
        self, request: booking_pb2.ListPendingRefundsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListPendingRefundsResponse:
        rows = await self.refunds.pending(request.page_size)
        return booking_pb2.ListPendingRefundsResponse(bookings=[booking_pb(b) for b in rows])

    async def ListBookings(
        self, request: booking_pb2.ListBookingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListBookingsResponse:
        parent = request.WhichOneof("parent")
        rows, token = await self.lifecycle.list_bookings(
            owner=uid(request.owner_user_id, "owner_user_id") if parent == "owner_user_id" else None,
            clinic=uid(request.clinic_id, "clinic_id") if parent == "clinic_id" else None,
            start_from=dt(request.start_time_from) if request.HasField("start_time_from") else None,
            size=request.page_size,
            token=request.page_token,
        )
        now = self.lifecycle.clock()
        return booking_pb2.ListBookingsResponse(
            bookings=[await self._booking_pb(b, now) for b in rows], next_page_token=token
        )


def _set_pet_paths(p: booking_pb2.Pet) -> list[str]:
    """AIP-134 without a mask: the updatable fields the request sets."""
    paths = [name for name in ("name", "birth_date", "notes") if getattr(p, name)]
    if p.species:
        paths.append("species")
    paths += [name for name in ("breed", "weight_kg") if p.HasField(name)]
    return paths
