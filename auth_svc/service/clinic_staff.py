"""ClinicStaffService's servicer: authenticates the caller (auth_svc verifies its own tokens), then
request → handler → response for invitations, staff and service accounts."""

from __future__ import annotations

from auth_svc.handlers import ClinicStaffHandlers, LocalAuthenticator, ServiceAccountHandlers
from auth_svc.service.auth import Context, _clinic_role, _ts, clinic_role_name, user_pb
from petpro.authn import Principal
from petpro.convert import uid
from petpro_api.auth.v1 import clinic_staff_pb2, clinic_staff_pb2_grpc


class ClinicStaffServicer(clinic_staff_pb2_grpc.ClinicStaffServiceServicer):
    """Authenticates the caller first (auth_svc verifies its own tokens), then hands the claims to the
    use case, which checks membership of the clinic named in the request."""

    def __init__(
        self, staff: ClinicStaffHandlers, accounts: ServiceAccountHandlers, authn: LocalAuthenticator
    ) -> None:
        self.staff = staff
        self.accounts = accounts
        self.authn = authn

    async def _caller(self, context: Context) -> Principal:
        return await self.authn.principal(context)

    async def InviteStaff(
        self, request: clinic_staff_pb2.InviteStaffRequest, context: Context
    ) -> clinic_staff_pb2.InviteStaffResponse:
        caller = await self._caller(context)
        inv = await self.staff.invite(
            caller, uid(request.clinic_id, "clinic_id"), request.email, clinic_role_name(request.role)
        )
        return clinic_staff_pb2.InviteStaffResponse(
            invitation=clinic_staff_pb2.Invitation(
                invitation_id=str(inv.id),
                clinic_id=str(inv.clinic_id),
                email=inv.email,
                role=_clinic_role(inv.role),
                expire_time=_ts(inv.expires_at),
                create_time=_ts(inv.created_at),
            )
        )

    async def AcceptInvitation(
        self, request: clinic_staff_pb2.AcceptInvitationRequest, context: Context
    ) -> clinic_staff_pb2.AcceptInvitationResponse:
        user = await self.staff.accept(request.token, request.password, request.name)
        return clinic_staff_pb2.AcceptInvitationResponse(user=user_pb(user))

    async def ListStaff(
        self, request: clinic_staff_pb2.ListStaffRequest, context: Context
    ) -> clinic_staff_pb2.ListStaffResponse:
        caller = await self._caller(context)
        rows, token = await self.staff.list_staff(
            caller, uid(request.clinic_id, "clinic_id"), request.page_size, request.page_token
        )
        return clinic_staff_pb2.ListStaffResponse(
            members=[
                clinic_staff_pb2.StaffMember(
                    user_id=str(m.user_id),
                    email=m.email,
                    name=m.name,
                    role=_clinic_role(m.role),
                    service_account=m.service_account,
                )
                for m in rows
            ],
            next_page_token=token,
        )

    async def RemoveStaff(
        self, request: clinic_staff_pb2.RemoveStaffRequest, context: Context
    ) -> clinic_staff_pb2.RemoveStaffResponse:
        caller = await self._caller(context)
        await self.staff.remove_staff(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.user_id, "user_id")
        )
        return clinic_staff_pb2.RemoveStaffResponse()

    async def CreateServiceAccount(
        self, request: clinic_staff_pb2.CreateServiceAccountRequest, context: Context
    ) -> clinic_staff_pb2.CreateServiceAccountResponse:
        caller = await self._caller(context)
        creds = await self.accounts.create_service_account(
            caller, uid(request.clinic_id, "clinic_id"), request.name, clinic_role_name(request.role)
        )
        return clinic_staff_pb2.CreateServiceAccountResponse(
            account=clinic_staff_pb2.ServiceAccount(
                client_id=str(creds.client_id),
                clinic_id=str(creds.clinic_id),
                name=creds.name,
                role=_clinic_role(creds.role),
                create_time=_ts(creds.created_at),
            ),
            client_secret=creds.secret,
        )

    async def RotateServiceAccountSecret(
        self, request: clinic_staff_pb2.RotateServiceAccountSecretRequest, context: Context
    ) -> clinic_staff_pb2.RotateServiceAccountSecretResponse:
        caller = await self._caller(context)
        secret = await self.accounts.rotate_secret(
            caller, uid(request.clinic_id, "clinic_id"), uid(request.client_id, "client_id")
        )
        return clinic_staff_pb2.RotateServiceAccountSecretResponse(client_secret=secret)

    async def IssueServiceToken(
        self, request: clinic_staff_pb2.IssueServiceTokenRequest, context: Context
    ) -> clinic_staff_pb2.IssueServiceTokenResponse:
        pair = await self.accounts.issue_service_token(
            uid(request.client_id, "client_id"), request.client_secret
        )
        return clinic_staff_pb2.IssueServiceTokenResponse(
            access_token=pair.access_token, token_type="Bearer", expires_in=pair.expires_in
        )
