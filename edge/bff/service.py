"""MobileService — the BFF the REST edge transcodes to.

For each call: authenticate (AuthService.ValidateToken, cached briefly), then orchestrate the internal
services over gRPC.  The caller is always the token's user: no request names a user, so nobody can
act for somebody else.  Internal errors keep their status (NOT_FOUND stays 404 …) since the kit
interceptor passes the internal services' rich status through.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from cachetools import TTLCache

from petpro.authn import CLIENT_ADDRESS_HEADER, Authenticator, Principal, TokenCache, metadata
from petpro.errors import Conflict, InvalidArgument, Kind, NotFound, PermissionDenied
from petpro.upstream import UpstreamError, call
from petpro_api.auth.v1 import auth_pb2, auth_pb2_grpc
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.mobile.v1 import mobile_pb2, mobile_pb2_grpc
from petpro_api.notification.v1 import notification_pb2, notification_pb2_grpc
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc

# a service's name is only the checkout page's line item: a rename shows there after at most this long
SERVICE_NAME_SECONDS = 60.0
# a payment in one of these states never becomes payable again (a hold's status reads skip GetPayment)
PAID = frozenset({payment_pb2.PAYMENT_STATUS_SUCCEEDED, payment_pb2.PAYMENT_STATUS_REFUNDED})
PAID_SECONDS = 3600.0  # longer than any hold waits for its confirmation
# GetReservation's long-poll: booking is asked to answer this long before our own deadline, and the
# call to it gets the channel's usual time on top of the wait
WAIT_MARGIN_SECONDS = 2.0
UPSTREAM_SECONDS = 5.0

# uuid5 namespace turning a client's Idempotency-Key into the internal request ids (AIP-155)
IDEMPOTENCY_NAMESPACE = uuid.UUID("0f6f1d1e-6a8c-4d7e-9b2e-5e1b8f0c2a11")

MOBILE_STATUS = {
    booking_pb2.RESERVATION_STATE_HELD: "PENDING_PAYMENT",
    booking_pb2.RESERVATION_STATE_CONFIRMED: "CONFIRMED",
    booking_pb2.RESERVATION_STATE_EXPIRED: "EXPIRED",
    booking_pb2.RESERVATION_STATE_FAILED: "FAILED",
    booking_pb2.RESERVATION_STATE_CANCELLED: "CANCELLED",
}


def _no_wait(request: booking_pb2.GetReservationRequest) -> booking_pb2.GetReservationRequest:
    return booking_pb2.GetReservationRequest(lock_id=request.lock_id, owner_user_id=request.owner_user_id)


def client_address(context: grpc.aio.ServicerContext) -> str:
    """The end client's IP address as Envoy established it (``x-petpro-client-address``, which Envoy
    overwrites on every request with the address its X-Forwarded-For model trusts: see
    edge.gateway.config.ClientAddress), else the gRPC peer: a caller that did not come through Envoy
    (in the cluster only Envoy may reach the edge's gRPC port)."""
    seen = metadata(context).get(CLIENT_ADDRESS_HEADER, "").strip()
    if seen:
        return seen[:64]
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


@dataclass
class Stubs:
    auth: auth_pb2_grpc.AuthServiceAsyncStub
    booking: booking_pb2_grpc.BookingServiceAsyncStub
    payment: payment_pb2_grpc.PaymentServiceAsyncStub
    notification: notification_pb2_grpc.NotificationServiceAsyncStub


class MobileServicer(mobile_pb2_grpc.MobileServiceServicer):
    def __init__(
        self,
        stubs: Stubs,
        *,
        token_cache: TokenCache | None = None,
        service_name_seconds: float = SERVICE_NAME_SECONDS,
    ) -> None:
        self.stubs = stubs
        self.authn = Authenticator(stubs.auth, token_cache)
        # service id → name for the checkout line item: one GetService RPC per service a minute
        # instead of one per booking (edge and booking CPU in the full flow)
        self._service_names: TTLCache[str, str] = TTLCache(maxsize=4096, ttl=service_name_seconds)
        # reservations whose payment succeeded (or was refunded): it never opens again, so the status
        # reads while the hold awaits its confirmation need no GetPayment (one RPC per poll)
        self._paid: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=PAID_SECONDS)
        self._closing = asyncio.Event()  # set at shutdown: long-polls stop waiting

    async def _principal(self, context: grpc.aio.ServicerContext) -> Principal:
        return await self.authn.principal(context)

    # -- auth ----------------------------------------------------------------------------------------
    async def Register(
        self, request: mobile_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.RegisterResponse:
        r = await call(
            self.stubs.auth.Register,
            auth_pb2.RegisterRequest(
                email=request.email,
                password=request.password,
                name=request.name,
                client_address=client_address(context),
                locale=request.locale,
                time_zone=request.time_zone,
                accept_language=metadata(context).get("accept-language", "")[:1024],
            ),
        )
        return mobile_pb2.RegisterResponse(user=r.user)

    async def Login(
        self, request: mobile_pb2.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.LoginResponse:
        r = await call(
            self.stubs.auth.Login,
            auth_pb2.LoginRequest(
                email=request.email, password=request.password, client_address=client_address(context)
            ),
        )
        return mobile_pb2.LoginResponse(
            access_token=r.access_token,
            refresh_token=r.refresh_token,
            token_type=r.token_type,
            expires_in=r.expires_in,
        )

    async def RefreshToken(
        self, request: mobile_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.RefreshTokenResponse:
        r = await call(
            self.stubs.auth.RefreshToken, auth_pb2.RefreshTokenRequest(refresh_token=request.refresh_token)
        )
        return mobile_pb2.RefreshTokenResponse(
            access_token=r.access_token,
            refresh_token=r.refresh_token,
            token_type=r.token_type,
            expires_in=r.expires_in,
        )

    # -- the owner's account (auth_svc owns it; the caller is the token's user) ----------------------
    async def RequestPasswordReset(
        self, request: mobile_pb2.RequestPasswordResetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.RequestPasswordResetResponse:
        await call(
            self.stubs.auth.RequestPasswordReset,
            auth_pb2.RequestPasswordResetRequest(email=request.email, client_address=client_address(context)),
        )
        return mobile_pb2.RequestPasswordResetResponse()

    async def ResetPassword(
        self, request: mobile_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ResetPasswordResponse:
        await call(
            self.stubs.auth.ResetPassword,
            auth_pb2.ResetPasswordRequest(
                email=request.email,
                token=request.token,
                new_password=request.new_password,
                client_address=client_address(context),
            ),
        )
        return mobile_pb2.ResetPasswordResponse()

    async def VerifyEmail(
        self, request: mobile_pb2.VerifyEmailRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.VerifyEmailResponse:
        r = await call(
            self.stubs.auth.VerifyEmail,
            auth_pb2.VerifyEmailRequest(token=request.token, client_address=client_address(context)),
        )
        return mobile_pb2.VerifyEmailResponse(user=r.user)

    async def Logout(
        self, request: mobile_pb2.LogoutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.LogoutResponse:
        me = await self._principal(context)
        await call(
            self.stubs.auth.Logout,
            auth_pb2.LogoutRequest(user_id=me.user_id, refresh_token=request.refresh_token),
        )
        return mobile_pb2.LogoutResponse()

    async def LogoutEverywhere(
        self, request: mobile_pb2.LogoutEverywhereRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.LogoutEverywhereResponse:
        me = await self._principal(context)
        await call(self.stubs.auth.LogoutEverywhere, auth_pb2.LogoutEverywhereRequest(user_id=me.user_id))
        return mobile_pb2.LogoutEverywhereResponse()

    async def ChangePassword(
        self, request: mobile_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ChangePasswordResponse:
        me = await self._principal(context)
        await call(
            self.stubs.auth.ChangePassword,
            auth_pb2.ChangePasswordRequest(
                user_id=me.user_id,
                session_id=me.session_id,
                current_password=request.current_password,
                new_password=request.new_password,
                client_address=client_address(context),
            ),
        )
        return mobile_pb2.ChangePasswordResponse()

    async def ChangeEmail(
        self, request: mobile_pb2.ChangeEmailRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ChangeEmailResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.auth.ChangeEmail,
            auth_pb2.ChangeEmailRequest(
                user_id=me.user_id,
                password=request.password,
                new_email=request.new_email,
                client_address=client_address(context),
            ),
        )
        return mobile_pb2.ChangeEmailResponse(user=r.user)

    async def ResendVerificationEmail(
        self, request: mobile_pb2.ResendVerificationEmailRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ResendVerificationEmailResponse:
        me = await self._principal(context)
        await call(self.stubs.auth.ResendVerification, auth_pb2.ResendVerificationRequest(user_id=me.user_id))
        return mobile_pb2.ResendVerificationEmailResponse()

    async def GetMe(
        self, request: mobile_pb2.GetMeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.GetMeResponse:
        me = await self._principal(context)
        r = await call(self.stubs.auth.GetUser, auth_pb2.GetUserRequest(user_id=me.user_id))
        return mobile_pb2.GetMeResponse(user=r.user)

    async def UpdateMe(
        self, request: mobile_pb2.UpdateMeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.UpdateMeResponse:
        me = await self._principal(context)
        user = auth_pb2.User()
        user.CopyFrom(request.user)
        user.user_id = me.user_id  # always the caller: a user_id in the body is ignored (output only)
        r = await call(
            self.stubs.auth.UpdateUser, auth_pb2.UpdateUserRequest(user=user, update_mask=request.update_mask)
        )
        return mobile_pb2.UpdateMeResponse(user=r.user)

    # -- the owner's data: export (each part from the service that owns it) and account deletion ----
    async def ExportMyData(
        self, request: mobile_pb2.ExportMyDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ExportMyDataResponse:
        me = await self._principal(context)
        account, booking = await asyncio.gather(
            call(self.stubs.auth.ExportAccount, auth_pb2.ExportAccountRequest(user_id=me.user_id)),
            call(
                self.stubs.booking.ExportOwnerData,
                booking_pb2.ExportOwnerDataRequest(owner_user_id=me.user_id),
            ),
        )
        email = account.data.fields["user"].struct_value.fields["email"].string_value
        payment, notifications = await asyncio.gather(
            call(
                self.stubs.payment.ExportCustomerData,
                payment_pb2.ExportCustomerDataRequest(order_refs=booking.order_refs, customer_email=email),
            ),
            call(
                self.stubs.notification.ExportUserData,
                notification_pb2.ExportUserDataRequest(user_id=me.user_id, email=email),
            ),
        )
        out = mobile_pb2.ExportMyDataResponse(
            account=account.data, booking=booking.data, payment=payment.data, notifications=notifications.data
        )
        out.export_time.GetCurrentTime()
        return out

    async def DeleteAccount(
        self, request: mobile_pb2.DeleteAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.DeleteAccountResponse:
        me = await self._principal(context)
        await call(
            self.stubs.auth.DeleteAccount,
            auth_pb2.DeleteAccountRequest(
                user_id=me.user_id, password=request.password, client_address=client_address(context)
            ),
        )
        return mobile_pb2.DeleteAccountResponse()

    # -- pets ----------------------------------------------------------------------------------------
    async def CreatePet(
        self, request: mobile_pb2.CreatePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.CreatePetResponse:
        me = await self._principal(context)
        req = booking_pb2.CreatePetRequest(
            owner_user_id=me.user_id,
            name=request.name,
            species=request.species,
            birth_date=request.birth_date,
        )
        if request.HasField("breed"):
            req.breed = request.breed
        r = await call(self.stubs.booking.CreatePet, req)
        return mobile_pb2.CreatePetResponse(pet=r.pet)

    async def ListPets(
        self, request: mobile_pb2.ListPetsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ListPetsResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.ListPets,
            booking_pb2.ListPetsRequest(
                owner_user_id=me.user_id, page_size=request.page_size, page_token=request.page_token
            ),
        )
        return mobile_pb2.ListPetsResponse(pets=r.pets, next_page_token=r.next_page_token)

    async def GetPet(
        self, request: mobile_pb2.GetPetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.GetPetResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.GetPet,
            booking_pb2.GetPetRequest(pet_id=request.pet_id, owner_user_id=me.user_id),
        )
        return mobile_pb2.GetPetResponse(pet=r.pet)

    async def UpdatePet(
        self, request: mobile_pb2.UpdatePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.UpdatePetResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.UpdatePet,
            booking_pb2.UpdatePetRequest(
                pet=request.pet, update_mask=request.update_mask, owner_user_id=me.user_id
            ),
        )
        return mobile_pb2.UpdatePetResponse(pet=r.pet)

    async def ArchivePet(
        self, request: mobile_pb2.ArchivePetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ArchivePetResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.ArchivePet,
            booking_pb2.ArchivePetRequest(pet_id=request.pet_id, owner_user_id=me.user_id, etag=request.etag),
        )
        return mobile_pb2.ArchivePetResponse(pet=r.pet)

    # -- booking flow --------------------------------------------------------------------------------
    async def CreateBooking(
        self, request: mobile_pb2.CreateBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.CreateBookingResponse:
        me = await self._principal(context)
        # the client's Idempotency-Key header arrives as metadata (forwarded by the transcoder)
        key = metadata(context).get("idempotency-key", "").strip()
        if len(key) > 255:
            raise InvalidArgument.field(
                "Idempotency-Key", "must be at most 255 characters", "HEADER_TOO_LONG"
            )
        request_id = (
            str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{me.user_id}:{key}")) if key else str(uuid.uuid4())
        )
        held = await call(
            self.stubs.booking.ReserveSlot,
            booking_pb2.ReserveSlotRequest(
                request_id=request_id,
                service_id=request.service_id,
                pet_id=request.pet_id,
                owner_user_id=me.user_id,
                slot_start_time=request.slot,
                owner_email=me.email,
                owner_name=me.name,
                owner_locale=me.locale,
                provider_id=request.provider_id,
            ),
        )
        res = held.reservation
        out = mobile_pb2.CreateBookingResponse(
            lock_id=res.lock_id,
            status=MOBILE_STATUS.get(res.state, "UNKNOWN"),
            payment_url=await self._payment_url(res, me.email),
            expires_at=res.expires_at,
            amount=res.amount,
            resources=res.resources,
            assignment=res.assignment,
        )
        if res.HasField("provider"):
            out.provider.CopyFrom(res.provider)
        return out

    async def _payment_url(self, res: booking_pb2.Reservation, email: str) -> str:
        """Opens (or, on a retry, finds again) the checkout page of a held reservation ("" once it is
        no longer held).  Idempotent per reservation.  The write path only: reads use
        :meth:`_open_payment_url`."""
        if res.state != booking_pb2.RESERVATION_STATE_HELD:
            return ""
        session = await call(
            self.stubs.payment.CreatePaymentSession,
            payment_pb2.CreatePaymentSessionRequest(
                request_id=f"reservation-{res.lock_id}",
                order_ref=res.lock_id,
                amount=res.amount,
                customer_email=email,
                customer_user_id=res.owner_user_id,
                # booking names the service in the reservation (no GetService); an older booking does not
                description=res.service_name or await self._service_name(res.service_id),
                expires_at=res.expires_at,
            ),
        )
        return str(session.payment_url)

    async def _service_name(self, service_id: str) -> str:
        name = self._service_names.get(service_id)
        if name is None:
            r = await call(
                self.stubs.booking.GetService, booking_pb2.GetServiceRequest(service_id=service_id)
            )
            name = self._service_names[service_id] = r.service.name
        return name

    async def _open_payment_url(self, res: booking_pb2.Reservation) -> str:
        """The checkout page of a held reservation, read from its payment (one read, no write): ""
        when it is no longer held, or has no open payment (a CreateBooking retry with the same
        Idempotency-Key opens one)."""
        if res.state != booking_pb2.RESERVATION_STATE_HELD or res.lock_id in self._paid:
            return ""
        try:
            r = await call(
                self.stubs.payment.GetPayment, payment_pb2.GetPaymentRequest(order_ref=res.lock_id)
            )
        except UpstreamError as err:
            if err.kind == Kind.NOT_FOUND:
                return ""
            raise
        if r.payment.status in PAID:
            self._paid[res.lock_id] = True
        return r.payment.payment_url if r.payment.status == payment_pb2.PAYMENT_STATUS_PENDING else ""

    async def _own_reservation(
        self, lock_id: str, me: Principal, wait_seconds: int = 0, timeout: float | None = None
    ) -> booking_pb2.Reservation:
        request = booking_pb2.GetReservationRequest(
            lock_id=lock_id, wait_seconds=wait_seconds, owner_user_id=me.user_id
        )
        if wait_seconds > 0:  # a long-poll: booking answers by then, give it the usual time on top
            r = await self._long_poll(request, timeout)
        else:
            r = await call(self.stubs.booking.GetReservation, request)
        if r.reservation.owner_user_id != me.user_id:
            raise NotFound("reservation not found", reason="RESERVATION_NOT_FOUND")
        return r.reservation

    async def _long_poll(
        self, request: booking_pb2.GetReservationRequest, timeout: float | None
    ) -> booking_pb2.GetReservationResponse:
        """Booking's long-poll; when this edge begins to shut down (:meth:`close`) it is cut short and
        the reservation read as it is, so the drain need not wait for the longest wait."""
        rpc = functools.partial(self.stubs.booking.GetReservation, timeout=timeout)
        if self._closing.is_set():
            return await call(self.stubs.booking.GetReservation, _no_wait(request))
        polled = asyncio.ensure_future(call(rpc, request))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((polled, closing), return_when=asyncio.FIRST_COMPLETED)
            answered = polled.done()
        finally:  # (also when our caller went away: booking's wait is cancelled with it)
            closing.cancel()
            if not polled.done():
                polled.cancel()
        if answered:
            return polled.result()
        return await call(self.stubs.booking.GetReservation, _no_wait(request))

    def close(self) -> None:
        """Shutdown begins: the long-polls in flight answer now, with the reservation as it is."""
        self._closing.set()

    async def GetReservation(
        self, request: mobile_pb2.GetReservationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.GetReservationResponse:
        me = await self._principal(context)
        wait = float(request.wait_seconds)
        timeout = wait + UPSTREAM_SECONDS
        if wait > 0:  # a long-poll, never past our own deadline (Envoy's route gives it the time)
            left = context.time_remaining()
            if left is not None:
                wait = min(wait, left - WAIT_MARGIN_SECONDS)
                timeout = min(timeout, left)
        res = await self._own_reservation(request.lock_id, me, max(int(wait), 0), timeout)
        payment_url = await self._open_payment_url(res)
        return mobile_pb2.GetReservationResponse(
            lock_id=res.lock_id,
            status=MOBILE_STATUS.get(res.state, "UNKNOWN"),
            booking_id=res.booking_id,
            expires_at=res.expires_at,
            amount=res.amount,
            service_id=res.service_id,
            pet_id=res.pet_id,
            slot_start_time=res.slot_start_time,
            slot_end_time=res.slot_end_time,
            payment_url=payment_url,
            provider=res.provider if res.HasField("provider") else None,
            resources=res.resources,
            assignment=res.assignment,
        )

    async def GetBooking(
        self, request: mobile_pb2.GetBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.GetBookingResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.GetBooking, booking_pb2.GetBookingRequest(booking_id=request.booking_id)
        )
        if r.booking.owner_user_id != me.user_id:
            raise NotFound("booking not found", reason="BOOKING_NOT_FOUND")
        return mobile_pb2.GetBookingResponse(booking=r.booking)

    async def ListBookings(
        self, request: mobile_pb2.ListBookingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ListBookingsResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.ListBookings,
            booking_pb2.ListBookingsRequest(
                owner_user_id=me.user_id, page_size=request.page_size, page_token=request.page_token
            ),
        )
        return mobile_pb2.ListBookingsResponse(bookings=r.bookings, next_page_token=r.next_page_token)

    # -- lifecycle (owner) ---------------------------------------------------------------------------
    @staticmethod
    def _has_key(context: grpc.aio.ServicerContext) -> bool:
        return bool(metadata(context).get("idempotency-key", "").strip())

    def _request_id(self, context: grpc.aio.ServicerContext, me: Principal, method: str, target: str) -> str:
        """AIP-155 request id from the optional Idempotency-Key header (scoped to caller, method and
        booking, so one key can't collide across them); a fresh id without one."""
        key = metadata(context).get("idempotency-key", "").strip()
        if len(key) > 255:
            raise InvalidArgument.field(
                "Idempotency-Key", "must be at most 255 characters", "HEADER_TOO_LONG"
            )
        if not key:
            return str(uuid.uuid4())
        return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{me.user_id}:{method}:{target}:{key}"))

    async def CancelBooking(
        self, request: mobile_pb2.CancelBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.CancelBookingResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.CancelBooking,
            booking_pb2.CancelBookingRequest(
                request_id=self._request_id(context, me, "cancel", request.booking_id),
                booking_id=request.booking_id,
                reason=request.reason,
                owner_user_id=me.user_id,
            ),
        )
        return mobile_pb2.CancelBookingResponse(booking=r.booking)

    async def RescheduleBooking(
        self, request: mobile_pb2.RescheduleBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.RescheduleBookingResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.booking.RescheduleBooking,
            booking_pb2.RescheduleBookingRequest(
                request_id=self._request_id(context, me, "reschedule", request.booking_id),
                booking_id=request.booking_id,
                owner_user_id=me.user_id,
                slot_start_time=request.slot,
            ),
        )
        return mobile_pb2.RescheduleBookingResponse(booking=r.booking)

    # -- lifecycle (clinic staff: role and clinic from the token) -----------------------------------
    async def _staff(self, context: grpc.aio.ServicerContext, clinic_id: str) -> Principal:
        me = await self._principal(context)
        if "CLINIC_STAFF" not in me.roles or clinic_id not in me.clinic_ids:
            raise PermissionDenied("only staff of this clinic may do this", reason="NOT_CLINIC_STAFF")
        return me

    async def StaffCancelBooking(
        self, request: mobile_pb2.StaffCancelBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.StaffCancelBookingResponse:
        me = await self._staff(context, request.clinic_id)
        r = await call(
            self.stubs.booking.CancelBooking,
            booking_pb2.CancelBookingRequest(
                request_id=self._request_id(context, me, "staff-cancel", request.booking_id),
                booking_id=request.booking_id,
                reason=request.reason,
                clinic_id=request.clinic_id,
            ),
        )
        return mobile_pb2.StaffCancelBookingResponse(booking=r.booking)

    async def StaffCreateBooking(
        self, request: mobile_pb2.StaffCreateBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.StaffCreateBookingResponse:
        """Staff book for an owner.  What can be refused is checked before anything is written: the
        service is the clinic's, the slot one of its free slots (with the provider, if named); then
        the owner is found or invited, the pet found or created (a pet of that name and species is
        reused, so a retry makes no second one), the slot held, and the payment link mailed or the
        booking confirmed as paid at the clinic.  A race lost at the hold leaves the owner account
        and the pet (valid records the next attempt reuses), never a booking half made."""
        me = await self._staff(context, request.clinic_id)
        request_id = self._request_id(context, me, "staff-book", request.clinic_id)
        svc = (
            await call(
                self.stubs.booking.GetService, booking_pb2.GetServiceRequest(service_id=request.service_id)
            )
        ).service
        if svc.clinic_id != request.clinic_id:
            raise NotFound("service not found", reason="SERVICE_NOT_FOUND")
        clinic = (
            await call(
                self.stubs.booking.GetClinic, booking_pb2.GetClinicRequest(clinic_id=request.clinic_id)
            )
        ).clinic
        invite = auth_pb2.InviteOwnerRequest(
            email=request.owner_email,
            name=request.owner_name,
            phone=request.owner_phone,
            clinic_name=clinic.name,
            validate_only=True,
        )
        found = await call(self.stubs.auth.InviteOwner, invite)
        if request.pet_id:
            await self._check_pet(found, request.pet_id)
        try:
            await self._check_free(svc, clinic, request)
        except Conflict:
            # taken: by this very request, retried with its Idempotency-Key (its owner and pet exist,
            # ReserveSlot then answers as the first time), or truly taken (409, nothing written)
            known = found.HasField("user") and bool(
                request.pet_id or await self._owner_pet(found.user.user_id, request.new_pet, create=False)
            )
            if not (self._has_key(context) and known):
                raise
        invite.validate_only = False
        owner = await call(
            self.stubs.auth.InviteOwner,
            invite,
        )
        user = owner.user
        pet_id = request.pet_id or await self._owner_pet(user.user_id, request.new_pet)
        held = await call(
            self.stubs.booking.ReserveSlot,
            booking_pb2.ReserveSlotRequest(
                request_id=request_id,
                service_id=request.service_id,
                pet_id=pet_id,
                owner_user_id=user.user_id,
                slot_start_time=request.slot,
                owner_email=user.email,
                owner_name=user.name,
                provider_id=request.provider_id,
            ),
        )
        res = held.reservation
        out = mobile_pb2.StaffCreateBookingResponse(
            lock_id=res.lock_id,
            expires_at=res.expires_at,
            amount=res.amount,
            owner_user_id=user.user_id,
            owner_invited=owner.invited,
            pet_id=pet_id,
            resources=res.resources,
        )
        if res.HasField("provider"):
            out.provider.CopyFrom(res.provider)
        if request.payment == mobile_pb2.STAFF_PAYMENT_PAY_AT_CLINIC:
            confirmed = await call(
                self.stubs.booking.ConfirmUnpaidBooking,
                booking_pb2.ConfirmUnpaidBookingRequest(
                    reservation_lock_id=res.lock_id, clinic_id=request.clinic_id
                ),
            )
            out.booking.CopyFrom(confirmed.booking)
            out.status = "CONFIRMED"
            return out
        out.status = MOBILE_STATUS.get(res.state, "UNKNOWN")
        out.payment_url = await self._payment_url(res, user.email)
        if out.payment_url:
            await call(
                self.stubs.notification.SendPaymentRequest,
                notification_pb2.SendPaymentRequestRequest(
                    lock_id=res.lock_id,
                    user_id=user.user_id,
                    email=user.email,
                    name=user.name,
                    payment_url=out.payment_url,
                    service_name=svc.name,
                    slot_start_time=res.slot_start_time,
                    amount=f"{res.amount.amount_minor / 100:.2f} {res.amount.currency}",
                    expires_at=res.expires_at,
                ),
            )
        return out

    async def _check_free(
        self,
        svc: booking_pb2.Service,
        clinic: booking_pb2.Clinic,
        request: mobile_pb2.StaffCreateBookingRequest,
    ) -> None:
        """The slot is one of the service's that day (else INVALID_ARGUMENT on `slot`) and free, with
        the named provider if any (else 409 SLOT_UNAVAILABLE), before anything is written."""
        start = request.slot.ToDatetime(tzinfo=UTC)
        day = start.astimezone(ZoneInfo(clinic.time_zone or "UTC")).date().isoformat()
        avail = await call(
            self.stubs.booking.GetAvailability,
            booking_pb2.GetAvailabilityRequest(
                service_id=svc.service_id, date=day, provider_id=request.provider_id, pet_id=request.pet_id
            ),
        )
        slot = next((s for s in avail.slots if s.start_time.ToDatetime(tzinfo=UTC) == start), None)
        if slot is None:
            raise InvalidArgument.field(
                "slot", "is not a bookable slot of this service (see its availability)", "SLOT_NOT_OFFERED"
            )
        if not slot.free:
            raise Conflict("this slot is no longer available", reason="SLOT_UNAVAILABLE")

    async def _pets_of(self, owner_user_id: str) -> AsyncIterator[booking_pb2.Pet]:
        """Every pet of the owner, page by page."""
        token = ""
        while True:
            page = await call(
                self.stubs.booking.ListPets,
                booking_pb2.ListPetsRequest(owner_user_id=owner_user_id, page_size=100, page_token=token),
            )
            for pet in page.pets:
                yield pet
            token = page.next_page_token
            if not token:
                return

    async def _check_pet(self, owner: auth_pb2.InviteOwnerResponse, pet_id: str) -> None:
        """A given pet must be one of the (existing) owner's."""
        if owner.HasField("user"):
            async for pet in self._pets_of(owner.user.user_id):
                if pet.pet_id == pet_id:
                    return
        raise InvalidArgument.field(
            "pet_id", "is not a pet of this owner (new_pet creates one)", "PET_NOT_OWNED"
        )

    async def _owner_pet(
        self, owner_user_id: str, new: mobile_pb2.StaffNewPet, *, create: bool = True
    ) -> str:
        """The owner's pet of that name and species (a retry), else a new one ("" when not ``create``)."""
        async for pet in self._pets_of(owner_user_id):
            if pet.name.strip().lower() == new.name.strip().lower() and pet.species == new.species:
                return str(pet.pet_id)
        if not create:
            return ""
        req = booking_pb2.CreatePetRequest(owner_user_id=owner_user_id, name=new.name, species=new.species)
        if new.breed:
            req.breed = new.breed
        return str((await call(self.stubs.booking.CreatePet, req)).pet.pet_id)

    async def StaffMoveBooking(
        self, request: mobile_pb2.StaffMoveBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.StaffMoveBookingResponse:
        me = await self._staff(context, request.clinic_id)
        req = booking_pb2.MoveBookingRequest(
            request_id=self._request_id(context, me, "staff-move", request.booking_id),
            booking_id=request.booking_id,
            clinic_id=request.clinic_id,
            provider_id=request.provider_id,
            resource_ids=request.resource_ids,
        )
        if request.HasField("slot"):
            req.slot_start_time.CopyFrom(request.slot)
        r = await call(self.stubs.booking.MoveBooking, req)
        return mobile_pb2.StaffMoveBookingResponse(booking=r.booking)

    async def CompleteBooking(
        self, request: mobile_pb2.CompleteBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.CompleteBookingResponse:
        me = await self._staff(context, request.clinic_id)
        r = await call(
            self.stubs.booking.CompleteBooking,
            booking_pb2.CompleteBookingRequest(
                request_id=self._request_id(context, me, "complete", request.booking_id),
                booking_id=request.booking_id,
                clinic_id=request.clinic_id,
            ),
        )
        return mobile_pb2.CompleteBookingResponse(booking=r.booking)

    async def MarkNoShow(
        self, request: mobile_pb2.MarkNoShowRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.MarkNoShowResponse:
        me = await self._staff(context, request.clinic_id)
        r = await call(
            self.stubs.booking.MarkNoShow,
            booking_pb2.MarkNoShowRequest(
                request_id=self._request_id(context, me, "no-show", request.booking_id),
                booking_id=request.booking_id,
                clinic_id=request.clinic_id,
            ),
        )
        return mobile_pb2.MarkNoShowResponse(booking=r.booking)

    # -- notification preferences ------------------------------------------------------------------
    async def GetNotificationPreferences(
        self,
        request: mobile_pb2.GetNotificationPreferencesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mobile_pb2.GetNotificationPreferencesResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.notification.GetNotificationPreferences,
            notification_pb2.GetNotificationPreferencesRequest(user_id=me.user_id),
        )
        return mobile_pb2.GetNotificationPreferencesResponse(preferences=r.preferences)

    async def UpdateNotificationPreferences(
        self,
        request: mobile_pb2.UpdateNotificationPreferencesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mobile_pb2.UpdateNotificationPreferencesResponse:
        me = await self._principal(context)
        req = notification_pb2.UpdateNotificationPreferencesRequest(user_id=me.user_id)
        for f in (
            "reminders_email",
            "reminders_push",
            "changes_email",
            "changes_push",
            "reminders_sms",
            "changes_sms",
        ):
            if request.HasField(f):
                setattr(req, f, getattr(request, f))
        r = await call(self.stubs.notification.UpdateNotificationPreferences, req)
        return mobile_pb2.UpdateNotificationPreferencesResponse(preferences=r.preferences)

    # -- notifications -------------------------------------------------------------------------------
    async def ListNotifications(
        self, request: mobile_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.ListNotificationsResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.notification.ListNotifications,
            notification_pb2.ListNotificationsRequest(
                user_id=me.user_id, page_size=request.page_size, page_token=request.page_token
            ),
        )
        return mobile_pb2.ListNotificationsResponse(
            notifications=r.notifications, next_page_token=r.next_page_token
        )

    async def RegisterDevice(
        self, request: mobile_pb2.RegisterDeviceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mobile_pb2.RegisterDeviceResponse:
        me = await self._principal(context)
        r = await call(
            self.stubs.notification.RegisterDevice,
            notification_pb2.RegisterDeviceRequest(
                user_id=me.user_id, platform=request.platform, token=request.token
            ),
        )
        return mobile_pb2.RegisterDeviceResponse(device=r.device)
