"""The kit's server against hostile input, for every service at once: authentication before anything
else on client-facing services, control characters and invalid UTF-8 as INVALID_ARGUMENT naming the
field, and a database error caused by a client value never an outage."""

from __future__ import annotations

import grpc
import psycopg
import pytest
import sqlalchemy.exc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from petpro import grpc_server
from petpro.authn import Principal, principal_var
from petpro.errors import Unauthenticated
from petpro.settings import ServiceSettings
from petpro.textcheck import invalid_utf8_field, text_violations
from petpro_api.booking.v1 import booking_pb2
from petpro_api.mobile.v1 import mobile_pb2, mobile_pb2_grpc

GOOD = "good-token"
ANN = Principal("u-1", "ann@example.com", "Ann", frozenset({"OWNER"}), frozenset(), expires_at=4e9)


class _Settings(ServiceSettings):
    component = "edge"


class FakeAuthenticator:
    """The port the interceptor needs: ``validate(token) → Principal`` (AuthService in production)."""

    def __init__(self) -> None:
        self.validated: list[str] = []

    async def validate(self, token: str) -> Principal:
        self.validated.append(token)
        if token != GOOD:
            raise Unauthenticated("token not valid", reason="TOKEN_INVALID")
        return ANN


class Mobile(mobile_pb2_grpc.MobileServiceServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def CreatePet(self, request, context):
        self.calls.append(("CreatePet", principal_var.get()))
        if request.name == "db-refuses":
            raise sqlalchemy.exc.DataError(
                "INSERT INTO pets …",
                {},
                psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
            )
        return mobile_pb2.CreatePetResponse(pet=booking_pb2.Pet(name=request.name))

    async def Login(self, request, context):  # public: no token needed
        self.calls.append(("Login", principal_var.get()))
        return mobile_pb2.LoginResponse(access_token="t")


@pytest.fixture
async def mesh():
    servicer, authn = Mobile(), FakeAuthenticator()
    app = grpc_server.App(
        name="test",
        settings=_Settings(grace_seconds=0),
        services=[
            grpc_server.Registration(
                mobile_pb2_grpc.add_MobileServiceServicer_to_server,
                servicer,
                "petpro.mobile.v1.MobileService",
                authenticator=authn,
            )
        ],
    )
    running = await grpc_server.start(app, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield servicer, authn, channel
    await channel.close()
    await running.stop(grace=0)


def _bad_request(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    status = rpc_status.from_call(err)
    reason, fields = "", {}
    for d in status.details if status else ():
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            reason = info.reason
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            d.Unpack(bad)
            fields = {v.field: v.reason for v in bad.field_violations}
    return reason, fields


def _raw(channel: grpc.aio.Channel, method: str):
    return channel.unary_unary(
        f"/petpro.mobile.v1.MobileService/{method}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )


BAD_UTF8_NAME = b"\x0a\x03R\xffx" + b"\x10\x01"  # CreatePetRequest{name: b"R\xffx", species: 1}


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Bearer forged"),), (("authorization", "Basic x"),)]
)
async def test_no_valid_token_is_unauthenticated_whatever_the_body(mesh, metadata):
    servicer, _, channel = mesh
    stub = mobile_pb2_grpc.MobileServiceStub(channel)
    for body in (
        mobile_pb2.CreatePetRequest(),
        mobile_pb2.CreatePetRequest(name="x" * 5000, birth_date="nope"),
        mobile_pb2.CreatePetRequest(name="Rex\x00"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.CreatePet(body, metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED, body
        assert _bad_request(exc.value)[1] == {}  # nothing about the schema leaks
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # not even decoding comes first
        await _raw(channel, "CreatePet")(BAD_UTF8_NAME, metadata=metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert servicer.calls == []


async def test_public_methods_need_no_token_and_authenticated_calls_see_their_principal(mesh):
    servicer, authn, channel = mesh
    stub = mobile_pb2_grpc.MobileServiceStub(channel)
    await stub.Login(mobile_pb2.LoginRequest(email="ann@example.com", password="pw"))
    await stub.CreatePet(
        mobile_pb2.CreatePetRequest(name="Rex", species=booking_pb2.SPECIES_DOG),
        metadata=(("authorization", f"Bearer {GOOD}"),),
    )
    assert servicer.calls == [("Login", None), ("CreatePet", ANN)]
    assert authn.validated == [GOOD]


@pytest.mark.parametrize("name", ["Rex\x00", "\x1b[31mRex", "Re\nx", "Rex\x7f"])
async def test_control_characters_are_invalid_argument_naming_the_field(mesh, name):
    servicer, _, channel = mesh
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await mobile_pb2_grpc.MobileServiceStub(channel).CreatePet(
            mobile_pb2.CreatePetRequest(name=name, species=booking_pb2.SPECIES_DOG),
            metadata=(("authorization", f"Bearer {GOOD}"),),
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request(exc.value) == ("INVALID_ARGUMENT", {"name": "CONTROL_CHARACTER"})
    assert servicer.calls == []


async def test_invalid_utf8_is_invalid_argument_naming_the_field_not_internal(mesh):
    servicer, _, channel = mesh
    auth = (("authorization", f"Bearer {GOOD}"),)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _raw(channel, "CreatePet")(BAD_UTF8_NAME, metadata=auth)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request(exc.value)[1] == {"name": "INVALID_UTF8"}
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # not a protobuf message at all
        await _raw(channel, "Login")(b"\xff\xff\xff", metadata=auth)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request(exc.value)[0] == "MALFORMED_REQUEST"
    assert servicer.calls == []


async def test_database_refusing_a_client_value_is_invalid_argument_not_unavailable(mesh):
    _, _, channel = mesh
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await mobile_pb2_grpc.MobileServiceStub(channel).CreatePet(
            mobile_pb2.CreatePetRequest(name="db-refuses", species=booking_pb2.SPECIES_DOG),
            metadata=(("authorization", f"Bearer {GOOD}"),),
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request(exc.value)[0] == "INVALID_VALUE"
    assert "NUL" not in exc.value.details()


def test_text_rules_reach_nested_and_repeated_strings():
    msg = mobile_pb2.ListPetsResponse(
        pets=[booking_pb2.Pet(name="ok"), booking_pb2.Pet(name="a", breed="b\x01")], next_page_token="\x00"
    )
    assert {v.field for v in text_violations(msg)} == {"pets[1].breed", "next_page_token"}
    assert (
        text_violations(mobile_pb2.ListPetsResponse(pets=[booking_pb2.Pet(name="Rüdiger 🐕 \u2028")])) == []
    )


def test_invalid_utf8_field_is_found_in_nested_messages():
    pet_ok = booking_pb2.Pet(name="ok").SerializeToString()
    pet_bad = b"\x1a\x02\xc3\x28"  # Pet.name (field 3) = invalid 2-byte sequence
    data = b"".join(b"\x0a" + bytes([len(p)]) + p for p in (pet_ok, pet_bad))  # ListPetsResponse.pets
    assert invalid_utf8_field(mobile_pb2.ListPetsResponse.DESCRIPTOR, data) == "pets[1].name"
    assert invalid_utf8_field(mobile_pb2.ListPetsResponse.DESCRIPTOR, pet_ok) is None
