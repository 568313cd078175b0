"""The ClinicAdminService servicer: authenticates the caller, maps the request to the clinic-operations use
case (which checks membership of the clinic) and the result back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.message import Message

from booking_svc.domain import (
    MAX_BOOKING_HORIZON,
    WEEKDAYS,
    ClinicBooking,
    Closure,
    Interval,
    Service,
    format_end,
    parse_hhmm,
)
from booking_svc.handlers import (
    CLINIC_FIELDS,
    PROVIDER_FIELDS,
    RESOURCE_FIELDS,
    SERVICE_FIELDS,
    ClinicAdminHandlers,
    ClinicProfile,
    WeeklyHours,
)
from booking_svc.service.convert import (
    booking_pb,
    clinic_pb,
    needs_from_pb,
    provider_pb,
    resource_pb,
    service_pb,
)
from petpro.authn import Authenticator
from petpro.convert import dt, uid
from petpro.errors import InvalidArgument
from petpro_api.booking.v1 import booking_pb2, clinic_admin_pb2, clinic_admin_pb2_grpc


def _weekly(hours: Iterable[booking_pb2.OpeningHours], prefix: str) -> WeeklyHours:
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
    return ClinicProfile(
        name=c.name, time_zone=c.time_zone, address=c.address, phone=c.phone, email=c.email, locale=c.locale
    )


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
        provider_ids=tuple(uid(p, f"service.provider_ids[{i}]") for i, p in enumerate(s.provider_ids)),
        needs=needs_from_pb(s.needs),
    )


def _species(values: Iterable[int]) -> tuple[str, ...]:
    return tuple(booking_pb2.Species.Name(x).removeprefix("SPECIES_") for x in values)  # type: ignore[arg-type]


def _set_paths(msg: Message, fields: tuple[str, ...]) -> list[str]:
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


def _paths(
    request: clinic_admin_pb2.UpdateClinicRequest
    | clinic_admin_pb2.UpdateServiceRequest
    | clinic_admin_pb2.UpdateProviderRequest
    | clinic_admin_pb2.UpdateResourceRequest,
    resource: Message,
    fields: tuple[str, ...],
) -> list[str]:
    return list(request.update_mask.paths) if request.update_mask.paths else _set_paths(resource, fields)


def _intervals(items: Iterable[clinic_admin_pb2.TimeInterval], prefix: str) -> list[tuple[str, Interval]]:
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
        self.handlers = handlers
        self.authn = authn

    async def CreateClinic(
        self, request: clinic_admin_pb2.CreateClinicRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.CreateClinicResponse:
        caller = await self.authn.principal(context)
        clinic = await self.handlers.create_clinic(
            caller,
            _profile(request.clinic),
            _weekly(request.clinic.opening_hours, "clinic.opening_hours"),
            uid(request.request_id, "request_id") if request.request_id else None,
        )
        return clinic_admin_pb2.CreateClinicResponse(clinic=clinic_pb(clinic))

    async def UpdateClinic(
        self, request: clinic_admin_pb2.UpdateClinicRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.UpdateClinicResponse:
        caller = await self.authn.principal(context)
        clinic = await self.handlers.update_clinic(
            caller,
            uid(request.clinic.clinic_id, "clinic.clinic_id"),
            _profile(request.clinic),
            _paths(request, request.clinic, CLINIC_FIELDS),
            request.clinic.etag,
        )
        return clinic_admin_pb2.UpdateClinicResponse(clinic=clinic_pb(clinic))

    async def SetOpeningHours(
        self, request: clinic_admin_pb2.SetOpeningHoursRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.SetOpeningHoursResponse:
        caller = await self.authn.principal(context)
        clinic, affected = await self.handlers.set_opening_hours(
            caller,
            uid(request.clinic_id, "clinic_id"),
            _weekly(request.opening_hours, "opening_hours"),
            request.etag,
        )
        return clinic_admin_pb2.SetOpeningHoursResponse(
            clinic=clinic_pb(clinic), affected_bookings=[booking_pb(b) for b in affected]
        )

    async def CreateClosure(
        self, request: clinic_admin_pb2.CreateClosureRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.CreateClosureResponse:
        caller = await self.authn.principal(context)
        c = request.closure
        closure, affected = await self.handlers.create_closure(
            caller, uid(request.clinic_id, "clinic_id"), c.start_date, c.end_date, c.reason
        )
        return clinic_admin_pb2.CreateClosureResponse(
            closure=closure_pb(closure), affected_bookings=[booking_pb(b) for b in affected]
        )

    async def ListClosures(
        self, request: clinic_admin_pb2.ListClosuresRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ListClosuresResponse:
        caller = await self.authn.principal(context)
        rows, token = await self.handlers.list_closures(
            caller, uid(request.clinic_id, "clinic_id"), request.page_size, request.page_token
        )
        return clinic_admin_pb2.ListClosuresResponse(
            closures=[closure_pb(c) for c in rows], next_page_token=token
        )

    async def DeleteClosure(
        self, request: clinic_admin_pb2.DeleteClosureRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.DeleteClosureResponse:
        caller = await self.authn.principal(context)
        await self.handlers.delete_closure(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.closure_id, "closure_id")
        )
        return clinic_admin_pb2.DeleteClosureResponse()

    async def SetDayOverride(
        self, request: clinic_admin_pb2.SetDayOverrideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.SetDayOverrideResponse:
        caller = await self.authn.principal(context)
        o = request.override
        day, ivs, affected = await self.handlers.set_day_override(
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

    async def DeleteDayOverride(
        self, request: clinic_admin_pb2.DeleteDayOverrideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.DeleteDayOverrideResponse:
        caller = await self.authn.principal(context)
        await self.handlers.delete_day_override(caller, uid(request.clinic_id, "clinic_id"), request.date)
        return clinic_admin_pb2.DeleteDayOverrideResponse()

    async def CreateService(
        self, request: clinic_admin_pb2.CreateServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.CreateServiceResponse:
        caller = await self.authn.principal(context)
        svc = await self.handlers.create_service(
            caller,
            uid(request.clinic_id, "clinic_id"),
            _draft(request.service, creating=True),
            uid(request.request_id, "request_id") if request.request_id else None,
        )
        return clinic_admin_pb2.CreateServiceResponse(service=service_pb(svc))

    async def UpdateService(
        self, request: clinic_admin_pb2.UpdateServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.UpdateServiceResponse:
        caller = await self.authn.principal(context)
        svc = await self.handlers.update_service(
            caller,
            uid(request.service.service_id, "service.service_id"),
            _draft(request.service, creating=False),
            _paths(request, request.service, SERVICE_FIELDS),
            request.service.etag,
        )
        return clinic_admin_pb2.UpdateServiceResponse(service=service_pb(svc))

    async def ArchiveService(
        self, request: clinic_admin_pb2.ArchiveServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ArchiveServiceResponse:
        caller = await self.authn.principal(context)
        svc = await self.handlers.archive_service(caller, uid(request.service_id, "service_id"), request.etag)
        return clinic_admin_pb2.ArchiveServiceResponse(service=service_pb(svc))

    async def ListClinicBookings(
        self, request: clinic_admin_pb2.ListClinicBookingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ListClinicBookingsResponse:
        caller = await self.authn.principal(context)
        rows, token = await self.handlers.list_clinic_bookings(
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

    # -- providers and resources (docs/design/scheduling.md)
    async def CreateProvider(
        self, request: clinic_admin_pb2.CreateProviderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.CreateProviderResponse:
        caller = await self.authn.principal(context)
        p = request.provider
        provider = await self.handlers.create_provider(
            caller,
            uid(request.clinic_id, "clinic_id"),
            p.display_name,
            uid(p.user_id, "provider.user_id") if p.user_id else None,
            _weekly(p.weekly_hours, "provider.weekly_hours"),
            uid(request.request_id, "request_id") if request.request_id else None,
        )
        return clinic_admin_pb2.CreateProviderResponse(provider=provider_pb(provider))

    async def UpdateProvider(
        self, request: clinic_admin_pb2.UpdateProviderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.UpdateProviderResponse:
        caller = await self.authn.principal(context)
        p = request.provider
        provider, affected = await self.handlers.update_provider(
            caller,
            uid(p.clinic_id, "provider.clinic_id"),
            uid(p.provider_id, "provider.provider_id"),
            p.display_name,
            uid(p.user_id, "provider.user_id") if p.user_id else None,
            _weekly(p.weekly_hours, "provider.weekly_hours"),
            _paths(request, p, PROVIDER_FIELDS),
            p.etag,
        )
        return clinic_admin_pb2.UpdateProviderResponse(
            provider=provider_pb(provider), affected_bookings=[booking_pb(b) for b in affected]
        )

    async def ListProviders(
        self, request: clinic_admin_pb2.ListProvidersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ListProvidersResponse:
        caller = await self.authn.principal(context)
        rows, token = await self.handlers.list_providers(
            caller,
            uid(request.clinic_id, "clinic_id"),
            request.show_archived,
            request.page_size,
            request.page_token,
        )
        return clinic_admin_pb2.ListProvidersResponse(
            providers=[provider_pb(p) for p in rows], next_page_token=token
        )

    async def ArchiveProvider(
        self, request: clinic_admin_pb2.ArchiveProviderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ArchiveProviderResponse:
        caller = await self.authn.principal(context)
        p = await self.handlers.archive_provider(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.provider_id, "provider_id"), request.etag
        )
        return clinic_admin_pb2.ArchiveProviderResponse(provider=provider_pb(p))

    async def CreateProviderTimeOff(
        self,
        request: clinic_admin_pb2.CreateProviderTimeOffRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> clinic_admin_pb2.CreateProviderTimeOffResponse:
        caller = await self.authn.principal(context)
        t = request.time_off
        if not t.HasField("start_time") or not t.HasField("end_time"):
            raise InvalidArgument.field(
                "time_off.start_time", "start_time and end_time are required", "REQUIRED"
            )
        clinic_id, provider_id = uid(request.clinic_id, "clinic_id"), uid(request.provider_id, "provider_id")
        off, affected = await self.handlers.create_time_off(
            caller, clinic_id, provider_id, dt(t.start_time), dt(t.end_time), t.reason
        )
        return clinic_admin_pb2.CreateProviderTimeOffResponse(
            time_off=booking_pb2.TimeOff(
                name=f"clinics/{clinic_id}/providers/{provider_id}/timeOff/{off.id}",
                time_off_id=str(off.id),
                start_time=t.start_time,
                end_time=t.end_time,
                reason=off.reason,
            ),
            affected_bookings=[booking_pb(b) for b in affected],
        )

    async def DeleteProviderTimeOff(
        self,
        request: clinic_admin_pb2.DeleteProviderTimeOffRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> clinic_admin_pb2.DeleteProviderTimeOffResponse:
        caller = await self.authn.principal(context)
        await self.handlers.delete_time_off(
            caller,
            uid(request.clinic_id, "clinic_id"),
            uid(request.provider_id, "provider_id"),
            uid(request.time_off_id, "time_off_id"),
        )
        return clinic_admin_pb2.DeleteProviderTimeOffResponse()

    async def CreateResource(
        self, request: clinic_admin_pb2.CreateResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.CreateResourceResponse:
        caller = await self.authn.principal(context)
        r = request.resource
        resource = await self.handlers.create_resource(
            caller,
            uid(request.clinic_id, "clinic_id"),
            r.display_name,
            r.resource_type,
            _species(r.species),
            uid(request.request_id, "request_id") if request.request_id else None,
        )
        return clinic_admin_pb2.CreateResourceResponse(resource=resource_pb(resource))

    async def UpdateResource(
        self, request: clinic_admin_pb2.UpdateResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.UpdateResourceResponse:
        caller = await self.authn.principal(context)
        r = request.resource
        resource = await self.handlers.update_resource(
            caller,
            uid(r.clinic_id, "resource.clinic_id"),
            uid(r.resource_id, "resource.resource_id"),
            r.display_name,
            _species(r.species),
            _paths(request, r, RESOURCE_FIELDS),
            r.etag,
        )
        return clinic_admin_pb2.UpdateResourceResponse(resource=resource_pb(resource))

    async def ListResources(
        self, request: clinic_admin_pb2.ListResourcesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ListResourcesResponse:
        caller = await self.authn.principal(context)
        rows, token = await self.handlers.list_resources(
            caller,
            uid(request.clinic_id, "clinic_id"),
            request.show_archived,
            request.page_size,
            request.page_token,
        )
        return clinic_admin_pb2.ListResourcesResponse(
            resources=[resource_pb(r) for r in rows], next_page_token=token
        )

    async def ArchiveResource(
        self, request: clinic_admin_pb2.ArchiveResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> clinic_admin_pb2.ArchiveResourceResponse:
        caller = await self.authn.principal(context)
        r = await self.handlers.archive_resource(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.resource_id, "resource_id"), request.etag
        )
        return clinic_admin_pb2.ArchiveResourceResponse(resource=resource_pb(r))
