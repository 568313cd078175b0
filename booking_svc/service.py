"""BookingService servicer: request → handler → response."""

from __future__ import annotations

from booking_svc.domain import WEEKDAYS, Booking, Clinic, Pet, Reservation, Service
from booking_svc.handlers import BookingHandlers, ReserveCommand
from petpro.convert import dt, ts, uid
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc, events_pb2
from petpro_api.common.v1 import money_pb2


def money(amount_minor: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=amount_minor, currency=currency)


def clinic_pb(c: Clinic) -> booking_pb2.Clinic:
    hours = [
        booking_pb2.OpeningHours(
            weekday=WEEKDAYS.index(day) + 1, open_time=iv.start.strftime("%H:%M"), close_time=iv.end.strftime("%H:%M")
        )
        for day in WEEKDAYS
        for iv in c.opening_hours.get(day, [])
    ]
    return booking_pb2.Clinic(clinic_id=str(c.id), name=c.name, time_zone=c.time_zone, address=c.address,
                              phone=c.phone, email=c.email, opening_hours=hours)


def service_pb(s: Service) -> booking_pb2.Service:
    return booking_pb2.Service(service_id=str(s.id), clinic_id=str(s.clinic_id), name=s.name,
                               description=s.description, duration_minutes=s.duration_minutes,
                               price=money(s.price_minor, s.currency), capacity=s.capacity)


def pet_pb(p: Pet) -> booking_pb2.Pet:
    out = booking_pb2.Pet(pet_id=str(p.id), owner_user_id=str(p.owner_user_id), name=p.name,
                          species=booking_pb2.Species.Value(f"SPECIES_{p.species}"),
                          birth_date=p.birth_date.isoformat() if p.birth_date else "", create_time=ts(p.created_at))
    if p.breed:
        out.breed = p.breed
    return out


def reservation_pb(r: Reservation) -> booking_pb2.Reservation:
    return booking_pb2.Reservation(
        lock_id=str(r.lock_id), state=booking_pb2.ReservationState.Value(f"RESERVATION_STATE_{r.state.value}"),
        service_id=str(r.service_id), clinic_id=str(r.clinic_id), pet_id=str(r.pet_id),
        owner_user_id=str(r.owner_user_id), slot_start_time=ts(r.start), slot_end_time=ts(r.end),
        expires_at=ts(r.expires_at), amount=money(r.amount_minor, r.currency),
        booking_id=str(r.booking_id) if r.booking_id else "", payment_id=str(r.payment_id) if r.payment_id else "",
        create_time=ts(r.created_at),
    )


def booking_pb(b: Booking) -> booking_pb2.Booking:
    return booking_pb2.Booking(
        booking_id=str(b.id), state=booking_pb2.BookingState.Value(f"BOOKING_STATE_{b.state}"),
        reservation_lock_id=str(b.lock_id), payment_id=str(b.payment_id), clinic_id=str(b.clinic_id),
        service_id=str(b.service_id), pet_id=str(b.pet_id), owner_user_id=str(b.owner_user_id),
        slot_start_time=ts(b.start), slot_end_time=ts(b.end), amount=money(b.amount_minor, b.currency),
        create_time=ts(b.created_at), cancel_time=ts(b.cancelled_at),
    )


class BookingServicer(booking_pb2_grpc.BookingServiceServicer):
    def __init__(self, handlers: BookingHandlers) -> None:
        self.h = handlers

    async def ListClinics(self, request, context):  # type: ignore[no-untyped-def]
        rows, token = await self.h.list_clinics(request.page_size, request.page_token)
        return booking_pb2.ListClinicsResponse(clinics=[clinic_pb(c) for c in rows], next_page_token=token)

    async def GetClinic(self, request, context):  # type: ignore[no-untyped-def]
        return booking_pb2.GetClinicResponse(clinic=clinic_pb(await self.h.get_clinic(uid(request.clinic_id, "clinic_id"))))

    async def ListServices(self, request, context):  # type: ignore[no-untyped-def]
        rows, token = await self.h.list_services(uid(request.clinic_id, "clinic_id"), request.page_size,
                                                 request.page_token)
        return booking_pb2.ListServicesResponse(services=[service_pb(s) for s in rows], next_page_token=token)

    async def GetService(self, request, context):  # type: ignore[no-untyped-def]
        svc, _ = await self.h.get_service(uid(request.service_id, "service_id"))
        return booking_pb2.GetServiceResponse(service=service_pb(svc))

    async def GetAvailability(self, request, context):  # type: ignore[no-untyped-def]
        svc, clinic, slots = await self.h.availability(uid(request.service_id, "service_id"), request.date)
        return booking_pb2.GetAvailabilityResponse(
            service_id=str(svc.id), date=request.date, time_zone=clinic.time_zone,
            slots=[booking_pb2.Slot(start_time=ts(s.start), end_time=ts(s.end), free=s.remaining > 0,
                                    remaining=s.remaining) for s in slots],
        )

    async def CreatePet(self, request, context):  # type: ignore[no-untyped-def]
        species = booking_pb2.Species.Name(request.species).removeprefix("SPECIES_")
        pet = await self.h.create_pet(uid(request.owner_user_id, "owner_user_id"), request.name, species,
                                      request.breed if request.HasField("breed") else None, request.birth_date)
        return booking_pb2.CreatePetResponse(pet=pet_pb(pet))

    async def ListPets(self, request, context):  # type: ignore[no-untyped-def]
        rows, token = await self.h.list_pets(uid(request.owner_user_id, "owner_user_id"), request.page_size,
                                             request.page_token)
        return booking_pb2.ListPetsResponse(pets=[pet_pb(p) for p in rows], next_page_token=token)

    async def ReserveSlot(self, request, context):  # type: ignore[no-untyped-def]
        res = await self.h.reserve(ReserveCommand(
            request_id=request.request_id, owner_user_id=uid(request.owner_user_id, "owner_user_id"),
            owner_email=request.owner_email, owner_name=request.owner_name,
            service_id=uid(request.service_id, "service_id"), pet_id=uid(request.pet_id, "pet_id"),
            start=dt(request.slot_start_time),
        ))
        return booking_pb2.ReserveSlotResponse(reservation=reservation_pb(res))

    async def GetReservation(self, request, context):  # type: ignore[no-untyped-def]
        res = await self.h.get_reservation(uid(request.lock_id, "lock_id"), None)
        return booking_pb2.GetReservationResponse(reservation=reservation_pb(res))

    async def ConfirmBooking(self, request, context):  # type: ignore[no-untyped-def]
        b = await self.h.confirm(uid(request.reservation_lock_id, "reservation_lock_id"),
                                 uid(request.payment_id, "payment_id"))
        return booking_pb2.ConfirmBookingResponse(booking_id=str(b.id), booking=booking_pb(b))

    async def GetBooking(self, request, context):  # type: ignore[no-untyped-def]
        return booking_pb2.GetBookingResponse(booking=booking_pb(
            await self.h.get_booking(uid(request.booking_id, "booking_id"), None)))

    async def ListBookings(self, request, context):  # type: ignore[no-untyped-def]
        parent = request.WhichOneof("parent")
        rows, token = await self.h.list_bookings(
            owner=uid(request.owner_user_id, "owner_user_id") if parent == "owner_user_id" else None,
            clinic=uid(request.clinic_id, "clinic_id") if parent == "clinic_id" else None,
            start_from=dt(request.start_time_from) if request.HasField("start_time_from") else None,
            size=request.page_size, token=request.page_token,
        )
        return booking_pb2.ListBookingsResponse(bookings=[booking_pb(b) for b in rows], next_page_token=token)


def encode_booking_created(event_id, booking: Booking, res: Reservation, svc: Service, clinic: Clinic,  # type: ignore[no-untyped-def]
                           pet: Pet, now) -> bytes:
    """The ``booking.created`` event (protobuf ``petpro.booking.v1.BookingCreated``) for the outbox."""
    return events_pb2.BookingCreated(
        event_id=str(event_id), occurred_at=ts(now), booking_id=str(booking.id), clinic_id=str(clinic.id),
        clinic_name=clinic.name, clinic_time_zone=clinic.time_zone,
        service=events_pb2.BookingCreated.Service(service_id=str(svc.id), name=svc.name),
        slot_start_time=ts(booking.start), slot_end_time=ts(booking.end),
        pet=events_pb2.BookingCreated.Pet(pet_id=str(pet.id), name=pet.name,
                                          species=booking_pb2.Species.Value(f"SPECIES_{pet.species}")),
        owner=events_pb2.BookingCreated.Owner(user_id=str(res.owner_user_id), email=res.owner_email,
                                              name=res.owner_name),
        amount=money(booking.amount_minor, booking.currency), reservation_lock_id=str(res.lock_id),
        payment_id=str(booking.payment_id),
    ).SerializeToString()
