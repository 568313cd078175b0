"""BookingService servicer: request → handler → response."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import grpc

from booking_svc.domain import (
    MAX_BOOKING_HORIZON,
    WEEKDAYS,
    Actor,
    Booking,
    BookingState,
    CancellationPolicy,
    Clinic,
    ClinicBooking,
    Closure,
    Interval,
    Pet,
    Reservation,
    Service,
    format_end,
    parse_hhmm,
)
from booking_svc.handlers import (
    CLINIC_FIELDS,
    SERVICE_FIELDS,
    TOPIC_BOOKING_CANCELLED,
    TOPIC_BOOKING_RESCHEDULED,
    BookingHandlers,
    ClinicAdminHandlers,
    ClinicProfile,
    ReserveCommand,
    WeeklyHours,
)
from booking_svc.ports import Change, RefundResult
from petpro.authn import Authenticator
from petpro.convert import dt, ts, uid
from petpro_api.booking.v1 import (
    booking_pb2,
    booking_pb2_grpc,
    clinic_admin_pb2,
    clinic_admin_pb2_grpc,
    events_pb2,
)
from petpro_api.common.v1 import money_pb2
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc


def money(amount_minor: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=amount_minor, currency=currency)


def clinic_pb(c: Clinic) -> booking_pb2.Clinic:
    hours = [
        booking_pb2.OpeningHours(
            weekday=booking_pb2.Weekday.ValueType(WEEKDAYS.index(day) + 1),
            open_time=iv.start.strftime("%H:%M"),
            close_time=iv.end.strftime("%H:%M"),
        )
        for day in WEEKDAYS
        for iv in c.opening_hours.get(day, [])
    ]
    return booking_pb2.Clinic(
        clinic_id=str(c.id),
        name=c.name,
        time_zone=c.time_zone,
        address=c.address,
        phone=c.phone,
        email=c.email,
        opening_hours=hours,
        etag=c.etag,
        reminder_offsets_minutes=list(c.reminder_offsets_minutes),
    )


def policy_pb(p: CancellationPolicy) -> booking_pb2.CancellationPolicy:
    return booking_pb2.CancellationPolicy(
        full_refund_hours=p.full_refund_hours,
        late_refund_percent=p.late_refund_percent,
        reschedule_cutoff_hours=p.reschedule_cutoff_hours,
    )


def service_pb(s: Service) -> booking_pb2.Service:
    return booking_pb2.Service(
        service_id=str(s.id),
        clinic_id=str(s.clinic_id),
        name=s.name,
        description=s.description,
        duration_minutes=s.duration_minutes,
        price=money(s.price_minor, s.currency),
        capacity=s.capacity,
        species_allowed=[booking_pb2.Species.Value(f"SPECIES_{x}") for x in s.species_allowed],
        buffer_after_minutes=s.buffer_after_minutes,
        min_notice_minutes=s.min_notice_minutes,
        max_horizon_days=s.max_horizon_days,
        active=s.active,
        archived=s.archived,
        etag=s.etag,
        cancellation_policy=policy_pb(s.policy),
    )


def pet_pb(p: Pet) -> booking_pb2.Pet:
    out = booking_pb2.Pet(
        pet_id=str(p.id),
        owner_user_id=str(p.owner_user_id),
        name=p.name,
        species=booking_pb2.Species.Value(f"SPECIES_{p.species}"),
        birth_date=p.birth_date.isoformat() if p.birth_date else "",
        create_time=ts(p.created_at),
    )
    if p.breed:
        out.breed = p.breed
    return out


def reservation_pb(r: Reservation) -> booking_pb2.Reservation:
    return booking_pb2.Reservation(
        lock_id=str(r.lock_id),
        state=booking_pb2.ReservationState.Value(f"RESERVATION_STATE_{r.state.value}"),
        service_id=str(r.service_id),
        clinic_id=str(r.clinic_id),
        pet_id=str(r.pet_id),
        owner_user_id=str(r.owner_user_id),
        slot_start_time=ts(r.start),
        slot_end_time=ts(r.end),
        expires_at=ts(r.expires_at),
        amount=money(r.amount_minor, r.currency),
        booking_id=str(r.booking_id) if r.booking_id else "",
        payment_id=str(r.payment_id) if r.payment_id else "",
        create_time=ts(r.created_at),
    )


def booking_pb(b: Booking, now: datetime | None = None) -> booking_pb2.Booking:
    """The booking; with ``now``, also what the owner may still do at that moment (from the domain)."""
    out = booking_pb2.Booking(
        booking_id=str(b.id),
        state=booking_pb2.BookingState.Value(f"BOOKING_STATE_{b.state.value}"),
        reservation_lock_id=str(b.lock_id),
        payment_id=str(b.payment_id),
        clinic_id=str(b.clinic_id),
        service_id=str(b.service_id),
        pet_id=str(b.pet_id),
        owner_user_id=str(b.owner_user_id),
        slot_start_time=ts(b.start),
        slot_end_time=ts(b.end),
        amount=money(b.amount_minor, b.currency),
        create_time=ts(b.created_at),
        cancel_time=ts(b.cancelled_at),
        cancellation_policy=policy_pb(b.policy),
        refund=booking_pb2.Refund(
            amount=money(b.refund_minor, b.currency),
            state=booking_pb2.RefundState.Value(f"REFUND_STATE_{b.refund_state.value}"),
            provider_refund_id=b.provider_refund_id,
            update_time=ts(b.refund_updated_at),
        ),
        cancel_reason=b.cancel_reason,
        cancelled_by=booking_pb2.BookingActor.Value(
            f"BOOKING_ACTOR_{b.cancelled_by.value if b.cancelled_by else 'UNSPECIFIED'}"
        ),
        update_time=ts(b.updated_at),
        reschedule_count=b.reschedule_count,
    )
    if now is not None:
        out.can_cancel = b.can_cancel(now)
        out.refund_if_cancelled_now.CopyFrom(money(b.refund_if_cancelled_now(now), b.currency))
        deadline = b.reschedule_deadline(now)
        if deadline is not None:
            out.reschedule_deadline.FromDatetime(deadline)
    return out


class BookingServicer(booking_pb2_grpc.BookingServiceServicer):
    def __init__(self, handlers: BookingHandlers) -> None:
        self.h = handlers

    async def ListClinics(
        self, request: booking_pb2.ListClinicsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListClinicsResponse:
        rows, token = await self.h.list_clinics(request.page_size, request.page_token)
        return booking_pb2.ListClinicsResponse(clinics=[clinic_pb(c) for c in rows], next_page_token=token)

    async def GetClinic(
        self, request: booking_pb2.GetClinicRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetClinicResponse:
        return booking_pb2.GetClinicResponse(
            clinic=clinic_pb(await self.h.get_clinic(uid(request.clinic_id, "clinic_id")))
        )

    async def ListServices(
        self, request: booking_pb2.ListServicesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListServicesResponse:
        rows, token = await self.h.list_services(
            uid(request.clinic_id, "clinic_id"), request.page_size, request.page_token
        )
        return booking_pb2.ListServicesResponse(services=[service_pb(s) for s in rows], next_page_token=token)

    async def GetService(
        self, request: booking_pb2.GetServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetServiceResponse:
        svc, _ = await self.h.get_service(uid(request.service_id, "service_id"))
        return booking_pb2.GetServiceResponse(service=service_pb(svc))

    async def GetAvailability(
        self, request: booking_pb2.GetAvailabilityRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetAvailabilityResponse:
        svc, clinic, slots = await self.h.availability(uid(request.service_id, "service_id"), request.date)
        return booking_pb2.GetAvailabilityResponse(
            service_id=str(svc.id),
            date=request.date,
            time_zone=clinic.time_zone,
            slots=[
                booking_pb2.Slot(
                    start_time=ts(s.start), end_time=ts(s.end), free=s.remaining > 0, remaining=s.remaining
                )
                for s in slots
            ],
        )

    async def CreatePet(
        self, request: booking_pb2.CreatePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.CreatePetResponse:
        species = booking_pb2.Species.Name(request.species).removeprefix("SPECIES_")
        pet = await self.h.create_pet(
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
        rows, token = await self.h.list_pets(
            uid(request.owner_user_id, "owner_user_id"), request.page_size, request.page_token
        )
        return booking_pb2.ListPetsResponse(pets=[pet_pb(p) for p in rows], next_page_token=token)

    async def ReserveSlot(
        self, request: booking_pb2.ReserveSlotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ReserveSlotResponse:
        res = await self.h.reserve(
            ReserveCommand(
                request_id=request.request_id,
                owner_user_id=uid(request.owner_user_id, "owner_user_id"),
                owner_email=request.owner_email,
                owner_name=request.owner_name,
                service_id=uid(request.service_id, "service_id"),
                pet_id=uid(request.pet_id, "pet_id"),
                start=dt(request.slot_start_time),
            )
        )
        return booking_pb2.ReserveSlotResponse(reservation=reservation_pb(res))

    async def GetReservation(
        self, request: booking_pb2.GetReservationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetReservationResponse:
        res = await self.h.get_reservation(uid(request.lock_id, "lock_id"), None)
        return booking_pb2.GetReservationResponse(reservation=reservation_pb(res))

    async def ConfirmBooking(
        self, request: booking_pb2.ConfirmBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ConfirmBookingResponse:
        b = await self.h.confirm(
            uid(request.reservation_lock_id, "reservation_lock_id"), uid(request.payment_id, "payment_id")
        )
        return booking_pb2.ConfirmBookingResponse(booking_id=str(b.id), booking=booking_pb(b, self.h.clock()))

    async def GetBooking(
        self, request: booking_pb2.GetBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.GetBookingResponse:
        return booking_pb2.GetBookingResponse(
            booking=booking_pb(
                await self.h.get_booking(uid(request.booking_id, "booking_id"), None), self.h.clock()
            )
        )

    async def CancelBooking(
        self, request: booking_pb2.CancelBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.CancelBookingResponse:
        booking_id = uid(request.booking_id, "booking_id")
        if request.WhichOneof("actor") == "clinic_id":
            b = await self.h.cancel(
                request.request_id,
                booking_id,
                Actor.CLINIC,
                request.reason,
                clinic=uid(request.clinic_id, "clinic_id"),
            )
        else:
            b = await self.h.cancel(
                request.request_id,
                booking_id,
                Actor.OWNER,
                request.reason,
                owner=uid(request.owner_user_id, "owner_user_id"),
            )
        return booking_pb2.CancelBookingResponse(booking=booking_pb(b, self.h.clock()))

    async def RescheduleBooking(
        self, request: booking_pb2.RescheduleBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.RescheduleBookingResponse:
        b = await self.h.reschedule(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.owner_user_id, "owner_user_id"),
            dt(request.slot_start_time),
        )
        return booking_pb2.RescheduleBookingResponse(booking=booking_pb(b, self.h.clock()))

    async def CompleteBooking(
        self, request: booking_pb2.CompleteBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.CompleteBookingResponse:
        b = await self.h.record_outcome(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.clinic_id, "clinic_id"),
            BookingState.COMPLETED,
        )
        return booking_pb2.CompleteBookingResponse(booking=booking_pb(b, self.h.clock()))

    async def MarkNoShow(
        self, request: booking_pb2.MarkNoShowRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.MarkNoShowResponse:
        b = await self.h.record_outcome(
            request.request_id,
            uid(request.booking_id, "booking_id"),
            uid(request.clinic_id, "clinic_id"),
            BookingState.NO_SHOW,
        )
        return booking_pb2.MarkNoShowResponse(booking=booking_pb(b, self.h.clock()))

    async def ListPendingRefunds(
        self, request: booking_pb2.ListPendingRefundsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListPendingRefundsResponse:
        rows = await self.h.pending_refunds(request.page_size)
        return booking_pb2.ListPendingRefundsResponse(bookings=[booking_pb(b) for b in rows])

    async def ListBookings(
        self, request: booking_pb2.ListBookingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> booking_pb2.ListBookingsResponse:
        parent = request.WhichOneof("parent")
        rows, token = await self.h.list_bookings(
            owner=uid(request.owner_user_id, "owner_user_id") if parent == "owner_user_id" else None,
            clinic=uid(request.clinic_id, "clinic_id") if parent == "clinic_id" else None,
            start_from=dt(request.start_time_from) if request.HasField("start_time_from") else None,
            size=request.page_size,
            token=request.page_token,
        )
        now = self.h.clock()
        return booking_pb2.ListBookingsResponse(
            bookings=[booking_pb(b, now) for b in rows], next_page_token=token
        )


def _weekly(hours, prefix: str) -> WeeklyHours:  # type: ignore[no-untyped-def]
    return WeeklyHours(
        tuple(
            (
                f"{prefix}[{i}]",
                WEEKDAYS[h.weekday - 1],
                Interval(parse_hhmm(h.open_time), parse_hhmm(h.close_time)),
            )
            for i, h in enumerate(hours)
        )
    )


def _profile(c: booking_pb2.Clinic) -> ClinicProfile:
    return ClinicProfile(name=c.name, time_zone=c.time_zone, address=c.address, phone=c.phone, email=c.email)


def _draft(s: booking_pb2.Service, *, creating: bool) -> Service:
    return Service(
        id=uuid.UUID(int=0),
        clinic_id=uuid.UUID(int=0),
        name=s.name,
        duration_minutes=s.duration_minutes,
        price_minor=s.price.amount_minor,
        currency=s.price.currency,
        capacity=s.capacity,
        description=s.description,
        species_allowed=tuple(
            booking_pb2.Species.Name(x).removeprefix("SPECIES_") for x in s.species_allowed
        ),
        buffer_after_minutes=s.buffer_after_minutes,
        min_notice_minutes=s.min_notice_minutes,
        max_horizon_days=s.max_horizon_days or MAX_BOOKING_HORIZON.days,
        active=True if creating else s.active,
    )


def _set_paths(msg, fields: tuple[str, ...]) -> list[str]:  # type: ignore[no-untyped-def]
    """AIP-134 without a mask: the fields the request sets (non-default values)."""
    out = []
    for name in fields:
        fd = msg.DESCRIPTOR.fields_by_name[name]
        if fd.message_type is not None and not fd.is_repeated:  # (upb descriptors have no .label)
            if msg.HasField(name):
                out.append(name)
        elif getattr(msg, name):
            out.append(name)
    return out


def _paths(request, resource, fields: tuple[str, ...]) -> list[str]:  # type: ignore[no-untyped-def]
    return list(request.update_mask.paths) if request.update_mask.paths else _set_paths(resource, fields)


def _intervals(items, prefix: str) -> list[tuple[str, Interval]]:  # type: ignore[no-untyped-def]
    return [
        (f"{prefix}[{i}]", Interval(parse_hhmm(iv.open_time), parse_hhmm(iv.close_time)))
        for i, iv in enumerate(items)
    ]


def closure_pb(c: Closure) -> clinic_admin_pb2.Closure:
    return clinic_admin_pb2.Closure(
        closure_id=str(c.id),
        start_date=c.start_date.isoformat(),
        end_date=c.end_date.isoformat(),
        reason=c.reason,
    )


def clinic_booking_pb(r: ClinicBooking) -> clinic_admin_pb2.ClinicBooking:
    return clinic_admin_pb2.ClinicBooking(
        booking=booking_pb(r.booking),
        service_name=r.service_name,
        pet_name=r.pet_name,
        pet_species=booking_pb2.Species.Value(f"SPECIES_{r.pet_species}"),
        owner_name=r.owner_name,
        owner_email=r.owner_email,
    )


class ClinicAdminServicer(clinic_admin_pb2_grpc.ClinicAdminServiceServicer):
    """Authenticates the caller first (AuthService.ValidateToken through the kit's Authenticator), then
    maps the request to the use case, which checks membership of the clinic."""

    def __init__(self, handlers: ClinicAdminHandlers, authn: Authenticator) -> None:
        self.h = handlers
        self.authn = authn

    async def CreateClinic(self, request, context):
        caller = await self.authn.principal(context)
        clinic = await self.h.create_clinic(
            caller,
            _profile(request.clinic),
            _weekly(request.clinic.opening_hours, "clinic.opening_hours"),
            uid(request.request_id, "request_id") if request.request_id else None,
        )
        return clinic_admin_pb2.CreateClinicResponse(clinic=clinic_pb(clinic))

    async def UpdateClinic(self, request, context):
        caller = await self.authn.principal(context)
        clinic = await self.h.update_clinic(
            caller,
            uid(request.clinic.clinic_id, "clinic.clinic_id"),
            _profile(request.clinic),
            _paths(request, request.clinic, CLINIC_FIELDS),
            request.clinic.etag,
        )
        return clinic_admin_pb2.UpdateClinicResponse(clinic=clinic_pb(clinic))

    async def SetOpeningHours(self, request, context):
        caller = await self.authn.principal(context)
        clinic, affected = await self.h.set_opening_hours(
            caller,
            uid(request.clinic_id, "clinic_id"),
            _weekly(request.opening_hours, "opening_hours"),
            request.etag,
        )
        return clinic_admin_pb2.SetOpeningHoursResponse(
            clinic=clinic_pb(clinic), affected_bookings=[booking_pb(b) for b in affected]
        )

    async def CreateClosure(self, request, context):
        caller = await self.authn.principal(context)
        c = request.closure
        closure, affected = await self.h.create_closure(
            caller, uid(request.clinic_id, "clinic_id"), c.start_date, c.end_date, c.reason
        )
        return clinic_admin_pb2.CreateClosureResponse(
            closure=closure_pb(closure), affected_bookings=[booking_pb(b) for b in affected]
        )

    async def ListClosures(self, request, context):
        caller = await self.authn.principal(context)
        rows, token = await self.h.list_closures(
            caller, uid(request.clinic_id, "clinic_id"), request.page_size, request.page_token
        )
        return clinic_admin_pb2.ListClosuresResponse(
            closures=[closure_pb(c) for c in rows], next_page_token=token
        )

    async def DeleteClosure(self, request, context):
        caller = await self.authn.principal(context)
        await self.h.delete_closure(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.closure_id, "closure_id")
        )
        return clinic_admin_pb2.DeleteClosureResponse()

    async def SetDayOverride(self, request, context):
        caller = await self.authn.principal(context)
        o = request.override
        day, ivs, affected = await self.h.set_day_override(
            caller, uid(request.clinic_id, "clinic_id"), o.date, _intervals(o.intervals, "override.intervals")
        )
        return clinic_admin_pb2.SetDayOverrideResponse(
            override=clinic_admin_pb2.DayOverride(
                date=day.isoformat(),
                intervals=[
                    clinic_admin_pb2.TimeInterval(
                        open_time=iv.start.strftime("%H:%M"), close_time=format_end(iv.end)
                    )
                    for iv in ivs
                ],
            ),
            affected_bookings=[booking_pb(b) for b in affected],
        )

    async def DeleteDayOverride(self, request, context):
        caller = await self.authn.principal(context)
        await self.h.delete_day_override(caller, uid(request.clinic_id, "clinic_id"), request.date)
        return clinic_admin_pb2.DeleteDayOverrideResponse()

    async def CreateService(self, request, context):
        caller = await self.authn.principal(context)
        svc = await self.h.create_service(
            caller,
            uid(request.clinic_id, "clinic_id"),
            _draft(request.service, creating=True),
            uid(request.request_id, "request_id") if request.request_id else None,
        )
        return clinic_admin_pb2.CreateServiceResponse(service=service_pb(svc))

    async def UpdateService(self, request, context):
        caller = await self.authn.principal(context)
        svc = await self.h.update_service(
            caller,
            uid(request.service.service_id, "service.service_id"),
            _draft(request.service, creating=False),
            _paths(request, request.service, SERVICE_FIELDS),
            request.service.etag,
        )
        return clinic_admin_pb2.UpdateServiceResponse(service=service_pb(svc))

    async def ArchiveService(self, request, context):
        caller = await self.authn.principal(context)
        svc = await self.h.archive_service(caller, uid(request.service_id, "service_id"), request.etag)
        return clinic_admin_pb2.ArchiveServiceResponse(service=service_pb(svc))

    async def ListClinicBookings(self, request, context):
        caller = await self.authn.principal(context)
        rows, token = await self.h.list_clinic_bookings(
            caller,
            uid(request.clinic_id, "clinic_id"),
            dt(request.start_time),
            dt(request.end_time),
            [booking_pb2.BookingState.Name(x).removeprefix("BOOKING_STATE_") for x in request.states],
            request.page_size,
            request.page_token,
        )
        return clinic_admin_pb2.ListClinicBookingsResponse(
            bookings=[clinic_booking_pb(r) for r in rows], next_page_token=token
        )


def encode_booking_created(
    event_id: uuid.UUID,
    booking: Booking,
    res: Reservation,
    svc: Service,
    clinic: Clinic,
    pet: Pet,
    now: datetime,
) -> bytes:
    """The ``booking.created`` event (protobuf ``petpro.booking.v1.BookingCreated``) for the outbox."""
    return events_pb2.BookingCreated(
        event_id=str(event_id),
        occurred_at=ts(now),
        booking_id=str(booking.id),
        clinic_id=str(clinic.id),
        clinic_name=clinic.name,
        clinic_time_zone=clinic.time_zone,
        service=events_pb2.BookingCreated.Service(service_id=str(svc.id), name=svc.name),
        slot_start_time=ts(booking.start),
        slot_end_time=ts(booking.end),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(pet.id), name=pet.name, species=booking_pb2.Species.Value(f"SPECIES_{pet.species}")
        ),
        owner=events_pb2.BookingCreated.Owner(
            user_id=str(res.owner_user_id), email=res.owner_email, name=res.owner_name
        ),
        amount=money(booking.amount_minor, booking.currency),
        reservation_lock_id=str(res.lock_id),
        payment_id=str(booking.payment_id),
        reminder_offsets_minutes=list(clinic.reminder_offsets_minutes),
    ).SerializeToString()


def encode_booking_change(
    event_id: uuid.UUID,
    change: Change,
    res: Reservation,
    svc: Service,
    clinic: Clinic,
    pet: Pet,
    now: datetime,
) -> bytes:
    """A lifecycle event (BookingCancelled, BookingRescheduled, BookingOutcomeRecorded) for the outbox."""
    b = change.booking
    ctx = events_pb2.BookingChangeContext(
        event_id=str(event_id),
        occurred_at=ts(now),
        booking_id=str(b.id),
        clinic_id=str(clinic.id),
        clinic_name=clinic.name,
        clinic_time_zone=clinic.time_zone,
        service=events_pb2.BookingCreated.Service(service_id=str(svc.id), name=svc.name),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(pet.id), name=pet.name, species=booking_pb2.Species.Value(f"SPECIES_{pet.species}")
        ),
        owner=events_pb2.BookingCreated.Owner(
            user_id=str(res.owner_user_id), email=res.owner_email, name=res.owner_name
        ),
        slot_start_time=ts(b.start),
        slot_end_time=ts(b.end),
        version=b.version,
        actor=booking_pb2.BookingActor.Value(f"BOOKING_ACTOR_{change.actor.value}"),
    )
    if change.topic == TOPIC_BOOKING_CANCELLED:
        return events_pb2.BookingCancelled(
            context=ctx, reason=b.cancel_reason, refund_amount=money(b.refund_minor, b.currency)
        ).SerializeToString()
    if change.topic == TOPIC_BOOKING_RESCHEDULED:
        return events_pb2.BookingRescheduled(
            context=ctx,
            previous_start_time=ts(change.previous_start),
            previous_end_time=ts(change.previous_end),
        ).SerializeToString()
    return events_pb2.BookingOutcomeRecorded(
        context=ctx, outcome=booking_pb2.BookingState.Value(f"BOOKING_STATE_{b.state}")
    ).SerializeToString()


class PaymentRefunds:
    """RefundPort over gRPC: PaymentService.RefundPayment, idempotent on the request id."""

    def __init__(self, stub: payment_pb2_grpc.PaymentServiceStub, timeout: float = 15.0) -> None:
        self.stub = stub
        self.timeout = timeout

    async def refund(
        self, payment_id: uuid.UUID, amount_minor: int, currency: str, request_id: str, reason: str
    ) -> RefundResult:
        r: payment_pb2.RefundPaymentResponse = await self.stub.RefundPayment(  # type: ignore[misc]
            payment_pb2.RefundPaymentRequest(
                payment_id=str(payment_id),
                reason=reason[:500],
                request_id=request_id,
                amount=money(amount_minor, currency),
            ),
            timeout=self.timeout,
        )
        return RefundResult(r.refund.provider_refund_id, r.refund.status)
