"""The REST edge for real: Envoy (config from edge.gateway.config) in front of a fake MobileService
(kit server, so validation and error details are the production ones) and the edge HTTP app (whose
webhook talks to fake Payment/Booking services over real gRPC).  Driven over HTTP only."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from benchmarks.run import check_edge_unthrottled
from edge.gateway.config import RateLimit, build_config, write_config
from edge.gateway.envoy import EnvoySettings
from edge.gateway.envoy import argv as envoy_argv
from edge.web.app import HttpServer, create_app
from edge.web.deps import HttpDeps
from petpro import grpc_server
from petpro.errors import DomainError, FailedPrecondition, InvalidArgument, Kind, NotFound, Unavailable
from petpro.settings import ServiceSettings, StackSettings
from petpro_api.auth.v1 import auth_pb2
from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc
from petpro_api.common.v1 import money_pb2
from petpro_api.mobile.v1 import mobile_pb2, mobile_pb2_grpc
from petpro_api.notification.v1 import notification_pb2
from petpro_api.payment.v1 import payment_pb2, payment_pb2_grpc

pytestmark = pytest.mark.integration

GOOD_SIGNATURE = "t=1700000000,v1=good"
READY_TIMEOUT = 20.0


class _Settings(ServiceSettings):
    component = "edge"


def _error(kind: Kind, reason: str) -> DomainError:
    cls = type(f"Test{kind.value}", (DomainError,), {"kind": kind, "reason": reason})
    return cls(f"test {kind.value.lower()}")


# --------------------------------------------------------------------------------------------------
# fakes
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    metadata: dict[str, str]
    request: Any
    time_remaining: float | None


class FakeMobile(mobile_pb2_grpc.MobileServiceServicer):
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def _record(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.calls.append(Call(method, md, request, context.time_remaining()))

    def last(self, method: str) -> Call:
        return [c for c in self.calls if c.method == method][-1]

    async def Register(self, request, context):
        self._record("Register", request, context)
        return mobile_pb2.RegisterResponse(user=auth_pb2.User(user_id=str(uuid.uuid4()), email=request.email))

    async def Login(self, request, context):
        self._record("Login", request, context)
        return mobile_pb2.LoginResponse(
            access_token="a", refresh_token="r", token_type="Bearer", expires_in=900
        )

    async def CreatePet(self, request, context):
        self._record("CreatePet", request, context)
        return mobile_pb2.CreatePetResponse(
            pet=booking_pb2.Pet(pet_id=str(uuid.uuid4()), name=request.name, species=request.species)
        )

    async def ListPets(self, request, context):
        self._record("ListPets", request, context)
        if request.page_token == "fail-unavailable":
            raise Unavailable("backend restarting")
        return mobile_pb2.ListPetsResponse()

    async def CreateBooking(self, request, context):
        self._record("CreateBooking", request, context)
        expires = timestamp_pb2.Timestamp(seconds=request.slot.seconds - 3600)
        return mobile_pb2.CreateBookingResponse(
            lock_id=str(uuid.uuid4()),
            status="PENDING_PAYMENT",
            payment_url="http://pay.example/cs_1",
            expires_at=expires,
            amount=money_pb2.Money(amount_minor=4550, currency="EUR"),
        )

    async def GetBooking(self, request, context):
        self._record("GetBooking", request, context)
        raise NotFound(f"booking {request.booking_id} not found", reason="BOOKING_NOT_FOUND")

    async def RegisterDevice(self, request, context):
        """The token selects an outcome: "fail:<KIND>" raises that kind, "boom" a bare exception."""
        self._record("RegisterDevice", request, context)
        if request.token == "boom":
            raise RuntimeError("secret internal detail")
        if request.token == "abort-internal":  # a status set by hand, bypassing the kit's mapping
            await context.abort(grpc.StatusCode.INTERNAL, "secret: psycopg.errors.DataError at pets.name")
        if request.token == "abort-cancelled":  # what a replica answers a call racing its shutdown
            await context.abort(grpc.StatusCode.CANCELLED, "")
        if request.token.startswith("fail:"):
            kind = Kind[request.token.removeprefix("fail:")]
            raise _error(kind, f"TEST_{kind.value}")
        return mobile_pb2.RegisterDeviceResponse(
            device=notification_pb2.Device(device_id=str(uuid.uuid4()), platform=request.platform)
        )

    async def ListNotifications(self, request, context):
        # (the generated base class raises NotImplementedError, which the kit reports as INTERNAL)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "notifications are not implemented")


class FakePayment(payment_pb2_grpc.PaymentServiceServicer):
    """HandleWebhook takes a JSON "event" {id, type, lock_id, payment_id, fail?} signed GOOD_SIGNATURE."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.refunds: list[tuple[str, str, str]] = []  # (payment id, request id, reason)
        self.settled: list[tuple[str, str]] = []  # (payment id, booking id)

    async def HandleWebhook(self, request, context):
        if request.signature != GOOD_SIGNATURE:
            raise InvalidArgument("signature does not match the payload", reason="INVALID_SIGNATURE")
        event = json.loads(request.payload)
        self.events.append(event)
        if event.get("fail") == "payment_unavailable":
            raise Unavailable("payment db down")
        if event.get("fail") == "payment_internal":
            await context.abort(grpc.StatusCode.INTERNAL, "secret: Traceback (most recent call last)")
        duplicate = event["id"] in self.seen
        self.seen.add(event["id"])
        status = (
            payment_pb2.PAYMENT_STATUS_SUCCEEDED
            if event["type"] in ("checkout.session.completed", "payment_intent.succeeded")
            else payment_pb2.PAYMENT_STATUS_PENDING
        )
        return payment_pb2.HandleWebhookResponse(
            event_id=event["id"],
            event_type=event["type"],
            duplicate=duplicate,
            payment=payment_pb2.Payment(
                payment_id=event["payment_id"], order_ref=event["lock_id"], status=status
            ),
        )

    async def SettlePayment(self, request, context):
        self.settled.append((request.payment_id, request.order_id))
        return payment_pb2.SettlePaymentResponse(payment=payment_pb2.Payment(payment_id=request.payment_id))

    async def RefundPayment(self, request, context):
        self.refunds.append((request.payment_id, request.request_id, request.reason))
        return payment_pb2.RefundPaymentResponse(
            payment=payment_pb2.Payment(
                payment_id=request.payment_id, status=payment_pb2.PAYMENT_STATUS_REFUNDED
            )
        )


class FakeBooking(booking_pb2_grpc.BookingServiceServicer):
    """ConfirmBooking for the webhook path; ListServices for the catalog reads Envoy transcodes
    straight to BookingService."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.confirms: list[tuple[str, str]] = []
        self.taken: set[str] = set()  # lock ids whose slot went to someone else
        self.down: set[str] = set()  # lock ids for which the service is "unavailable"

    _record = FakeMobile._record
    last = FakeMobile.last

    async def ListServices(self, request, context):
        self._record("ListServices", request, context)
        return booking_pb2.ListServicesResponse(
            services=[
                booking_pb2.Service(
                    service_id=str(uuid.uuid4()),
                    clinic_id=request.clinic_id,
                    name="Vaccination",
                    duration_minutes=30,
                    price=money_pb2.Money(amount_minor=4550, currency="EUR"),
                    capacity=request.page_size,
                )
            ],
            next_page_token="next-" + request.page_token,
        )

    async def ConfirmBooking(self, request, context):
        lock = request.reservation_lock_id
        self.confirms.append((lock, request.payment_id))
        if lock in self.taken:
            raise FailedPrecondition("slot taken after the hold expired", reason="SLOT_NO_LONGER_AVAILABLE")
        if lock in self.down:
            raise Unavailable("booking db down")
        booking_id = str(uuid.uuid5(uuid.NAMESPACE_URL, lock))
        return booking_pb2.ConfirmBookingResponse(
            booking_id=booking_id, booking=booking_pb2.Booking(booking_id=booking_id)
        )


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------


@dataclass
class EnvoyProcess:
    proc: subprocess.Popen[bytes]
    stack: StackSettings
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port('envoy')}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _poll(predicate, what: str, within: float = READY_TIMEOUT, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (async, truthy result = done) until the deadline, ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def spawn_envoy(stack: StackSettings, **config: Any) -> EnvoyProcess:
    """Envoy as `python -m edge.gateway` runs it (same argv), with the given build_config options.
    Envoy's own token check (jwt_authn) is off unless ``jwt`` is given: the fakes here take any
    bearer token and there is no auth_svc to serve the keys (it is tested against a real auth_svc in
    test_key_rotation.py and through the mesh in tests/e2e/test_auth_and_input.py)."""
    config.setdefault("jwt", None)
    path = write_config(build_config(stack, **config), stack.home / "run" / "envoy.json")
    log_path = stack.home / "envoy.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            envoy_argv(stack, EnvoySettings(log_level="warn"), path),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return EnvoyProcess(proc, stack, log_path)


async def start_envoy(stack: StackSettings, **config: Any) -> EnvoyProcess:
    envoy = spawn_envoy(stack, **config)
    proc = envoy.proc
    admin = f"http://127.0.0.1:{stack.port('envoy_admin')}/ready"

    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:

        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"envoy exited with {proc.returncode}:\n{envoy.log()}")
            try:
                return (await client.get(admin)).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await _poll(ready, "envoy /ready")
        except BaseException:
            envoy.stop()
            raise
    return envoy


@dataclass
class Edge:
    envoy: EnvoyProcess
    mobile: FakeMobile
    payment: FakePayment
    booking: FakeBooking
    client: httpx.AsyncClient
    extra: dict[str, Any] = field(default_factory=dict)


def _stack(port_bases: Any, tmp_path_factory: pytest.TempPathFactory) -> StackSettings:
    return StackSettings(home=tmp_path_factory.mktemp("edge"), port_base=port_bases.allocate())


@pytest.fixture(scope="module")
async def edge(port_bases, tmp_path_factory) -> AsyncIterator[Edge]:
    mobile, payment, booking = FakeMobile(), FakePayment(), FakeBooking()
    mobile_server = await grpc_server.start(
        grpc_server.App(
            name="fake-mobile",
            settings=_Settings(grace_seconds=0),
            services=[
                grpc_server.Registration(
                    mobile_pb2_grpc.add_MobileServiceServicer_to_server,
                    mobile,
                    "petpro.mobile.v1.MobileService",
                )
            ],
        ),
        port=0,
    )
    backend = await grpc_server.start(
        grpc_server.App(
            name="fake-backend",
            settings=_Settings(grace_seconds=0),
            services=[
                grpc_server.Registration(
                    payment_pb2_grpc.add_PaymentServiceServicer_to_server,
                    payment,
                    "petpro.payment.v1.PaymentService",
                ),
                grpc_server.Registration(
                    booking_pb2_grpc.add_BookingServiceServicer_to_server,
                    booking,
                    "petpro.booking.v1.BookingService",
                ),
            ],
        ),
        port=0,
    )
    deps = HttpDeps.connect(f"127.0.0.1:{backend.port}", f"127.0.0.1:{backend.port}", rpc_timeout=3.0)
    http = HttpServer(create_app(deps), "127.0.0.1", 0, graceful_timeout=1.0)
    http_port = http.bind()
    http_task = asyncio.create_task(http.serve())
    envoy = None
    try:
        envoy = await start_envoy(
            _stack(port_bases, tmp_path_factory),
            grpc_upstream=("127.0.0.1", mobile_server.port),
            upstreams={"petpro.booking.v1.BookingService": ("127.0.0.1", backend.port)},
            http_upstream=("127.0.0.1", http_port),
            max_request_bytes=4096,
        )
        async with httpx.AsyncClient(
            base_url=envoy.url, trust_env=False, timeout=15.0, headers={"Authorization": "Bearer test-token"}
        ) as client:
            yield Edge(envoy, mobile, payment, booking, client)
    finally:
        if envoy is not None:
            envoy.stop()
        http.stop()
        await http_task
        await deps.aclose()
        await backend.stop(grace=0)
        await mobile_server.stop(grace=0)


def _problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["type"] and body["reason"]
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


# --------------------------------------------------------------------------------------------------
# transcoding
# --------------------------------------------------------------------------------------------------


async def test_get_with_path_and_query_params_answers_snake_case(edge: Edge) -> None:
    clinic = str(uuid.uuid4())
    resp = await edge.client.get(
        f"/v1/clinics/{clinic}/services", params={"page_size": 7, "page_token": "p1"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["next_page_token"] == "next-p1"
    service = body["services"][0]
    assert service["clinic_id"] == clinic
    assert service["duration_minutes"] == 30 and service["capacity"] == 7
    assert service["price"] == {"amount_minor": "4550", "currency": "EUR"}  # int64 → string
    assert "grpc-status" not in resp.headers
    call = edge.booking.last("ListServices")
    assert call.request.clinic_id == clinic and call.request.page_size == 7


async def test_camel_case_input_is_accepted(edge: Edge) -> None:
    clinic = str(uuid.uuid4())
    resp = await edge.client.get(f"/v1/clinics/{clinic}/services", params={"pageSize": 3})
    assert resp.status_code == 200, resp.text
    assert resp.json()["services"][0]["capacity"] == 3

    service, pet = str(uuid.uuid4()), str(uuid.uuid4())
    resp = await edge.client.post(
        "/v1/bookings",
        json={"serviceId": service, "petId": pet, "slot": "2026-12-01T09:30:00Z", "paymentMethod": "card"},
        headers={"Idempotency-Key": f"k-{service}", "Authorization": "Bearer tok"},
    )
    assert resp.status_code == 201, resp.text
    request = edge.mobile.last("CreateBooking").request
    assert (request.service_id, request.pet_id, request.payment_method) == (service, pet, "card")


async def test_post_booking_is_201_and_headers_reach_the_service_as_metadata(edge: Edge) -> None:
    service, pet, key, rid = (str(uuid.uuid4()) for _ in range(4))
    resp = await edge.client.post(
        "/v1/bookings",
        json={"service_id": service, "pet_id": pet, "slot": "2026-12-01T09:30:00Z", "payment_method": "card"},
        headers={"Idempotency-Key": key, "Authorization": "Bearer the-token", "x-request-id": rid},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "PENDING_PAYMENT"
    assert body["expires_at"] == "2026-12-01T08:30:00Z"
    assert body["amount"] == {"amount_minor": "4550", "currency": "EUR"}
    assert resp.headers["x-request-id"] == rid  # the client's id is kept and echoed
    md = edge.mobile.last("CreateBooking").metadata
    assert md["idempotency-key"] == key
    assert md["authorization"] == "Bearer the-token"
    assert md["x-request-id"] == rid
    remaining = edge.mobile.last("CreateBooking").time_remaining
    assert remaining is not None and 0 < remaining < 10  # Envoy's grpc-timeout: the service has a deadline


async def test_other_creating_posts_are_201_and_the_rest_200(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/auth/register", json={"email": "a@b.co", "password": "long enough", "name": "A"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["user"]["email"] == "a@b.co"
    resp = await edge.client.post(
        "/v1/pets", json={"name": "Rex", "species": "species_dog"}
    )  # enum case-insensitive
    assert resp.status_code == 201, resp.text
    assert resp.json()["pet"]["species"] == "SPECIES_DOG"
    resp = await edge.client.post("/v1/auth/login", json={"email": "a@b.co", "password": "pw"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_type"] == "Bearer"
    resp = await edge.client.post("/v1/me/devices", json={"platform": "DEVICE_PLATFORM_IOS", "token": "t"})
    assert resp.status_code == 200, resp.text


async def test_request_id_is_generated_and_logged(edge: Edge) -> None:
    resp = await edge.client.get("/v1/pets")
    assert resp.status_code == 200, resp.text
    rid = resp.headers["x-request-id"]
    assert rid
    assert edge.mobile.last("ListPets").metadata["x-request-id"] == rid

    async def logged() -> dict[str, Any] | None:
        for line in edge.envoy.log().splitlines():
            if rid in line and line.startswith("{"):
                return json.loads(line)
        return None

    entry = await _poll(logged, "the access log line", within=10)  # flushed every second
    assert entry["method"] == "GET" and entry["path"] == "/v1/pets" and entry["status"] == 200
    assert entry["upstream_path"] == "/petpro.mobile.v1.MobileService/ListPets"
    assert isinstance(entry["duration_ms"], int)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


async def test_unknown_query_parameter_is_400_problem(edge: Edge) -> None:
    resp = await edge.client.get("/v1/pets", params={"bogus": "1"})
    body = _problem(resp, 400)
    assert body["violations"][0]["field"] == "bogus"


async def test_malformed_json_is_400_problem(edge: Edge) -> None:
    calls = len(edge.mobile.calls)
    resp = await edge.client.post(
        "/v1/pets", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    body = _problem(resp, 400)
    assert body["reason"] == "INVALID_REQUEST"
    assert body["instance"] == "/v1/pets"
    assert len(edge.mobile.calls) == calls  # never reached the service


async def test_not_found_is_404_problem_with_reason(edge: Edge) -> None:
    booking = str(uuid.uuid4())
    body = _problem(await edge.client.get(f"/v1/bookings/{booking}"), 404)
    assert body["reason"] == "BOOKING_NOT_FOUND"
    assert body["domain"] == "mobile.petpro.dev"  # raised by MobileService itself
    assert booking in body["detail"]
    assert body["type"].endswith("/booking-not-found")


async def test_invalid_argument_is_400_with_field_violations(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/bookings",
        json={"service_id": "nope", "slot": "2026-12-01T09:30:00Z", "payment_method": "cash"},
        headers={"Idempotency-Key": "k"},
    )
    body = _problem(resp, 400)
    assert body["reason"] == "INVALID_ARGUMENT"
    fields = {v["field"] for v in body["violations"]}
    assert fields == {"service_id", "pet_id", "payment_method"}
    assert all(v["description"] and v["reason"] for v in body["violations"])


async def test_bad_enum_value_is_400_naming_the_field(edge: Edge) -> None:
    body = _problem(await edge.client.post("/v1/pets", json={"name": "Rex", "species": "dragon"}), 400)
    assert body["violations"][0]["field"] == "species"


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("INVALID_ARGUMENT", 400),
        ("FAILED_PRECONDITION", 400),
        ("OUT_OF_RANGE", 400),
        ("UNAUTHENTICATED", 401),
        ("PERMISSION_DENIED", 403),
        ("NOT_FOUND", 404),
        ("ALREADY_EXISTS", 409),
        ("ABORTED", 409),
        ("RESOURCE_EXHAUSTED", 429),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
    ],
)
async def test_grpc_status_maps_like_grpc_gateway(edge: Edge, kind: str, status: int) -> None:
    resp = await edge.client.post(
        "/v1/me/devices", json={"platform": "DEVICE_PLATFORM_ANDROID", "token": f"fail:{kind}"}
    )
    body = _problem(resp, status)
    assert body["reason"] == f"TEST_{kind}"


async def test_internal_and_unimplemented_errors(edge: Edge) -> None:
    body = _problem(await edge.client.post("/v1/me/devices", json={"platform": 1, "token": "boom"}), 500)
    assert body["reason"] == "INTERNAL" and "secret" not in body["detail"]
    body = _problem(await edge.client.get("/v1/me/notifications"), 501)
    assert body["reason"] == "UNIMPLEMENTED"


async def test_an_upstream_that_cancels_the_call_is_a_503_to_retry(edge: Edge) -> None:
    # a gRPC server cancels a call that arrives as it begins shutting down (before its GOAWAY reaches
    # Envoy): the client closed nothing, so not grpc-gateway's 499 but "retry later"
    resp = await edge.client.post("/v1/me/devices", json={"platform": 1, "token": "abort-cancelled"})
    body = _problem(resp, 503)
    assert body["reason"] == "UNAVAILABLE" and "retry later" in body["detail"]


async def test_internal_status_message_never_reaches_the_client(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/me/devices",
        json={"platform": 1, "token": "abort-internal"},
        headers={"x-request-id": "rid-internal-1"},
    )
    body = _problem(resp, 500)
    assert body["reason"] == "INTERNAL" and "secret" not in resp.text and "psycopg" not in resp.text
    assert "rid-internal-1" in body["detail"]


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_only_allow_listed_headers_become_upstream_metadata(edge: Edge) -> None:
    headers = {
        "|": "x",
        "x-evil": "1",
        "cookie": "session=abc",
        "x-forwarded-host": "evil.example",
        "grpc-status-details-bin": "AAAA",
        "Authorization": "Bearer t",
        "Idempotency-Key": "key-1",
        "traceparent": TRACEPARENT,
        "tracestate": "a=b",
        "Accept-Language": "de-CH, de;q=0.9",
        "x-request-id": "rid-allow-1",
    }
    resp = await edge.client.get("/v1/pets", headers=headers)
    assert resp.status_code == 200, resp.text
    md = edge.mobile.last("ListPets").metadata
    for name in ("authorization", "idempotency-key", "traceparent", "tracestate", "accept-language"):
        assert (
            md[name]
            == headers[
                name.title() if name in ("authorization", "idempotency-key", "accept-language") else name
            ]
        )
    assert md["x-request-id"] == "rid-allow-1"
    for name in ("|", "x-evil", "cookie", "x-forwarded-host", "grpc-status-details-bin"):
        assert name not in md, name


@pytest.mark.parametrize("name", ["|", "a b", "{}", "x\\y", "é", "-bin", "x-thing-bin", "grpc-message"])
async def test_any_header_name_is_never_a_5xx(edge: Edge, name: str) -> None:
    raw = (
        f"GET /v1/pets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n{name}: x\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    port = int(edge.envoy.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    status = int(status_line.split()[1])
    assert status in (200, 400), status_line


async def test_bad_header_values_are_400_naming_the_header_or_dropped(edge: Edge) -> None:
    for name, value in (("Idempotency-Key", "k" * 256), ("authorization", "Bearer \u00e9t\u00e9".encode())):
        resp = await edge.client.get("/v1/pets", headers={name: value})
        body = _problem(resp, 400)
        assert body["reason"] == "INVALID_HEADER"
        assert body["violations"][0]["field"] == f"header:{name.lower()}"
    # an unusable request id is replaced by a fresh one (it goes into every log line)
    resp = await edge.client.get("/v1/pets", headers={"x-request-id": "bad id\t<script>"})
    assert resp.status_code == 200, resp.text
    rid = edge.mobile.last("ListPets").metadata["x-request-id"]
    assert rid != "bad id\t<script>" and re.fullmatch(r"[0-9a-f-]{36}", rid)
    # an unusable trace context is ignored (W3C), not an error
    resp = await edge.client.get(
        "/v1/pets", headers={"traceparent": "garbage", "accept-language": "<script>"}
    )
    assert resp.status_code == 200, resp.text
    md = edge.mobile.last("ListPets").metadata
    assert "accept-language" not in md and md.get("traceparent", "") != "garbage"


async def test_protected_routes_answer_401_before_the_body_is_parsed(edge: Edge) -> None:
    calls = len(edge.mobile.calls)
    for method, path, body in (
        ("POST", "/v1/bookings", b'{"slot": "not a time", "nope": 1}'),
        ("POST", "/v1/pets", b"{not json"),
        ("GET", "/v1/bookings/x", None),
        ("GET", "/v1/pets?page_size=abc&unknown=1", None),
    ):
        for auth in (None, "", "Bearer", "Basic dXNlcjpwYXNz"):
            headers = {"content-type": "application/json"}
            if auth is not None:
                headers["Authorization"] = auth
            resp = await edge.client.request(method, path, content=body, headers=headers)
            if auth is None:  # the fixture's client sends a token by default: take it away
                resp = await edge.client.request(
                    method, path, content=body, headers={**headers, "Authorization": ""}
                )
            problem = _problem(resp, 401)
            assert problem["reason"] == "TOKEN_MISSING" and problem["violations"] == []
    assert len(edge.mobile.calls) == calls  # nothing reached the BFF
    # public routes stay public
    resp = await edge.client.post(
        "/v1/auth/login", json={"email": "a@b.co", "password": "pw"}, headers={"Authorization": ""}
    )
    assert resp.status_code == 200, resp.text


async def test_undecodable_json_detail_is_printable_ascii(edge: Edge) -> None:
    resp = await edge.client.post(
        "/v1/pets",
        content=b'{"name":"R\xffx","species":"SPECIES_DOG"}',
        headers={"content-type": "application/json"},
    )
    body = _problem(resp, 400)
    assert "\n" not in body["detail"] and all(32 <= ord(c) < 127 for c in body["detail"])


async def test_unavailable_is_retried_for_get_only(edge: Edge) -> None:
    before = len([c for c in edge.mobile.calls if c.method == "ListPets"])
    resp = await edge.client.get("/v1/pets", params={"page_token": "fail-unavailable"})
    _problem(resp, 503)
    after = len([c for c in edge.mobile.calls if c.method == "ListPets"])
    assert after - before == 3  # first try + 2 retries

    before = len([c for c in edge.mobile.calls if c.method == "RegisterDevice"])
    _problem(await edge.client.post("/v1/me/devices", json={"platform": 1, "token": "fail:UNAVAILABLE"}), 503)
    assert len([c for c in edge.mobile.calls if c.method == "RegisterDevice"]) - before == 1


async def test_unknown_route_is_404_problem_and_never_proxied_raw(edge: Edge) -> None:
    body = _problem(await edge.client.get("/v1/nothing/here"), 404)
    assert body["reason"] == "NOT_FOUND"
    calls = len(edge.mobile.calls)
    resp = await edge.client.post("/petpro.booking.v1.BookingService/ConfirmBooking", json={})
    _problem(resp, 404)
    resp = await edge.client.delete("/v1/pets")
    _problem(resp, 404)
    assert len(edge.mobile.calls) == calls


async def test_body_over_the_limit_is_413_problem(edge: Edge) -> None:
    resp = await edge.client.post("/v1/pets", json={"name": "x" * 5000, "species": "SPECIES_CAT"})
    body = _problem(resp, 413)
    assert body["reason"] == "PAYLOAD_TOO_LARGE"


async def test_native_grpc_clients_pass_through_untouched(edge: Edge) -> None:
    clinic, booking = str(uuid.uuid4()), str(uuid.uuid4())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.envoy.stack.port('envoy')}") as channel:
        catalog = booking_pb2_grpc.BookingServiceStub(channel)
        resp = await catalog.ListServices(
            booking_pb2.ListServicesRequest(clinic_id=clinic, page_size=2), timeout=5
        )
        assert resp.services[0].clinic_id == clinic
        confirms = len(edge.booking.confirms)
        with pytest.raises(grpc.aio.AioRpcError) as denied:  # only the public reads are routed
            await catalog.ConfirmBooking(
                booking_pb2.ConfirmBookingRequest(
                    reservation_lock_id=str(uuid.uuid4()), payment_id=str(uuid.uuid4())
                ),
                timeout=5,
            )
        assert denied.value.code() == grpc.StatusCode.UNIMPLEMENTED  # Envoy's 404 route, never upstream
        assert len(edge.booking.confirms) == confirms
        stub = mobile_pb2_grpc.MobileServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetBooking(mobile_pb2.GetBookingRequest(booking_id=booking), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    details = dict(exc.value.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "BOOKING_NOT_FOUND"


# --------------------------------------------------------------------------------------------------
# the HTTP app behind Envoy
# --------------------------------------------------------------------------------------------------


async def test_openapi_docs_health_and_metrics_through_envoy(edge: Edge) -> None:
    resp = await edge.client.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/bookings" in doc["paths"]
    resp = await edge.client.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "/docs/assets/swagger-ui-bundle.js" in resp.text
    resp = await edge.client.get("/docs/assets/swagger-ui-bundle.js")  # the vendored Swagger UI
    assert resp.status_code == 200 and "SwaggerUIBundle" in resp.text
    resp = await edge.client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    resp = await edge.client.get("/metrics")
    assert resp.status_code == 200 and "edge_webhooks_total" in resp.text
    resp = await edge.client.get("/clinic/dashboard")  # served by the HTTP app behind Envoy
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")


def _event(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "checkout.session.completed",
        "lock_id": str(uuid.uuid4()),
        "payment_id": str(uuid.uuid4()),
    }
    event.update(overrides)
    return event


async def _deliver(edge: Edge, event: dict[str, Any], signature: str = GOOD_SIGNATURE) -> httpx.Response:
    return await edge.client.post(
        "/webhooks/stripe",
        content=json.dumps(event).encode(),
        headers={"Stripe-Signature": signature, "content-type": "application/json"},
    )


async def test_webhook_with_forged_signature_is_400_and_changes_nothing(edge: Edge) -> None:
    event = _event()
    body = _problem(await _deliver(edge, event, signature="t=1700000000,v1=forged"), 400)
    assert body["reason"] == "INVALID_SIGNATURE"
    assert body["instance"] == "/webhooks/stripe"
    body = _problem(
        await edge.client.post(
            "/webhooks/stripe", content=b"{}", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert body["reason"] == "MISSING_SIGNATURE"
    assert all(lock != event["lock_id"] for lock, _ in edge.booking.confirms)


async def test_webhook_success_confirms_the_booking_once(edge: Edge) -> None:
    event = _event()
    resp = await _deliver(edge, event)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["outcome"] == "confirmed" and body["event_id"] == event["id"]
    assert body["booking_id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, event["lock_id"]))
    assert [c for c in edge.booking.confirms if c[0] == event["lock_id"]] == [
        (event["lock_id"], event["payment_id"])
    ]
    # and settled in the same call: the payment is fulfilled, the sweep for lost webhooks never sees it
    assert (event["payment_id"], body["booking_id"]) in edge.payment.settled
    # a replay is recorded as duplicate by PaymentService and confirmed again (idempotent): same booking
    resp = await _deliver(edge, event)
    assert resp.status_code == 200 and resp.json()["duplicate"] is True
    assert resp.json()["booking_id"] == body["booking_id"]


async def test_webhook_for_an_unpaid_event_is_ignored(edge: Edge) -> None:
    event = _event(type="checkout.session.expired")
    resp = await _deliver(edge, event)
    assert resp.status_code == 200 and resp.json()["outcome"] == "ignored"
    assert all(lock != event["lock_id"] for lock, _ in edge.booking.confirms)


async def test_a_paid_payment_intent_is_recorded_and_only_the_checkout_event_confirms(edge: Edge) -> None:
    """Stripe sends both events for one paid Checkout; the booking is confirmed once, on the session's."""
    intent = _event(type="payment_intent.succeeded")
    resp = await _deliver(edge, intent)
    assert resp.status_code == 200 and resp.json()["outcome"] == "recorded"
    assert intent["id"] in edge.payment.seen  # verified and recorded by PaymentService
    assert all(lock != intent["lock_id"] for lock, _ in edge.booking.confirms)
    completed = _event(
        type="checkout.session.completed", lock_id=intent["lock_id"], payment_id=intent["payment_id"]
    )
    resp = await _deliver(edge, completed)
    assert resp.status_code == 200 and resp.json()["outcome"] == "confirmed"
    assert [c for c in edge.booking.confirms if c[0] == intent["lock_id"]] == [
        (intent["lock_id"], intent["payment_id"])
    ]


async def test_webhook_refunds_when_the_slot_is_gone(edge: Edge) -> None:
    event = _event()
    edge.booking.taken.add(event["lock_id"])
    resp = await _deliver(edge, event)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcome"] == "refunded"
    pid = event["payment_id"]
    assert (pid, f"fulfilment-{pid}", "slot_unavailable") in edge.payment.refunds


async def test_webhook_answers_503_when_it_cannot_commit(edge: Edge) -> None:
    event = _event()
    edge.booking.down.add(event["lock_id"])
    body = _problem(await _deliver(edge, event), 503)
    assert body["reason"] == "UNAVAILABLE"
    assert all(p != event["payment_id"] for p, _, _ in edge.payment.refunds)
    body = _problem(await _deliver(edge, _event(fail="payment_unavailable")), 503)
    # once the booking service is back, the sender's retry confirms
    edge.booking.down.discard(event["lock_id"])
    resp = await _deliver(edge, event)
    assert resp.status_code == 200 and resp.json()["outcome"] == "confirmed"


async def test_webhook_upstream_internal_error_is_a_500_without_its_message(edge: Edge) -> None:
    resp = await _deliver(edge, _event(fail="payment_internal"))
    body = _problem(resp, 500)  # a server fault, not "retry later" (the provider retries any non-2xx anyway)
    # petpro.upstream.from_rpc_error: an INTERNAL upstream is "internal error (request id …)", its text logged
    assert body["reason"] == "INTERNAL" and "secret" not in resp.text and "Traceback" not in resp.text
    assert body["detail"] == f"internal error (request id {body['request_id']})"


# --------------------------------------------------------------------------------------------------
# a second Envoy: upstream down, rate limit
# --------------------------------------------------------------------------------------------------


async def test_upstream_down_is_503(port_bases, tmp_path_factory) -> None:
    stack = _stack(port_bases, tmp_path_factory)
    closed = stack.port("edge")  # nothing listens on the stack's own gRPC/HTTP ports
    envoy = await start_envoy(stack, get_retries=0)
    try:
        assert closed
        async with httpx.AsyncClient(base_url=envoy.url, trust_env=False, timeout=10.0) as client:
            body = _problem(await client.get("/v1/clinics"), 503)
            assert body["reason"] == "UNAVAILABLE"
            assert "upstream" not in body["detail"]  # Envoy's internals are not shown
    finally:
        envoy.stop()


async def test_rate_limit_answers_429_with_retry_after_only_above_the_limit(
    port_bases, tmp_path_factory
) -> None:
    # A bucket of 3 that refills once an hour: whatever the machine's speed, the first 3 requests fit
    # and the 4th does not (a per-second refill would make the outcome depend on how fast we send).
    stack = _stack(port_bases, tmp_path_factory)
    limit = RateLimit(burst=3, tokens_per_fill=1, fill_seconds=3600)
    envoy = await start_envoy(stack, rate_limit=limit, get_retries=0)
    try:
        async with httpx.AsyncClient(base_url=envoy.url, trust_env=False, timeout=10.0) as client:
            below = [await client.get("/healthz") for _ in range(limit.burst)]
            assert [r.status_code for r in below] == [503] * limit.burst  # no HTTP app behind: 503, not 429
            assert all("retry-after" not in r.headers for r in below)
            above = await client.get("/healthz")
            body = _problem(above, 429)
            assert body["reason"] == "RATE_LIMITED"
            assert above.headers["retry-after"] == "3600"
        # and the benchmark harness refuses to measure capacity through a rate-limited edge
        with pytest.raises(RuntimeError, match="EDGE_ENVOY_RATE_LIMIT_BURST=0"):
            await check_edge_unthrottled(f"http://127.0.0.1:{stack.port('envoy_admin')}")
    finally:
        envoy.stop()


async def _statuses(
    envoy: EnvoyProcess, n: int, *, source: str = "127.0.0.1", token: str | None = None
) -> list[int]:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=envoy.url, transport=transport, trust_env=False, timeout=10.0) as c:
        return [(await c.get("/healthz", headers=headers)).status_code for _ in range(n)]


async def test_one_client_address_cannot_spend_the_limit_of_everyone(port_bases, tmp_path_factory) -> None:
    # hour-long refills: the outcome never depends on how fast requests are sent
    stack = _stack(port_bases, tmp_path_factory)
    limit = RateLimit(
        burst=1000,
        tokens_per_fill=1,
        fill_seconds=3600,
        per_client_burst=3,
        per_client_tokens_per_fill=1,
        per_token_burst=1000,
        per_token_tokens_per_fill=1,
    )
    envoy = await start_envoy(stack, rate_limit=limit, get_retries=0)
    try:
        assert await _statuses(envoy, 4) == [503, 503, 503, 429]  # (no HTTP app behind: 503 below the limit)
        assert await _statuses(envoy, 3, source="127.0.0.2") == [503, 503, 503]  # another client: its own
        assert await _statuses(envoy, 1, token="t1") == [429]  # a token does not lift an address's limit
    finally:
        envoy.stop()


async def test_one_token_cannot_spend_its_address_limit(port_bases, tmp_path_factory) -> None:
    stack = _stack(port_bases, tmp_path_factory)
    limit = RateLimit(
        burst=1000,
        tokens_per_fill=1,
        fill_seconds=3600,
        per_client_burst=1000,
        per_client_tokens_per_fill=1,
        per_token_burst=2,
        per_token_tokens_per_fill=1,
    )
    envoy = await start_envoy(stack, rate_limit=limit, get_retries=0)
    try:
        assert await _statuses(envoy, 3, token="user-a") == [503, 503, 429]
        assert await _statuses(envoy, 2, token="user-b") == [503, 503]  # same address, other caller
        assert await _statuses(envoy, 2) == [503, 503]  # anonymous: the address bucket only
    finally:
        envoy.stop()


def test_envoy_validates_the_generated_config(tmp_path: Path) -> None:
    stack = StackSettings(home=tmp_path, port_base=17400)
    path = write_config(build_config(stack), tmp_path / "envoy.json")
    binary = envoy_argv(stack, EnvoySettings(), path)[0]
    result = subprocess.run(
        [
            binary,
            "--mode",
            "validate",
            "--config-path",
            str(path),
            "--log-level",
            "error",
            "--base-id",
            str(stack.port("envoy") + 7),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_serve_http_runs_as_a_background_task_of_the_grpc_app() -> None:
    """How edge/server.py hosts the HTTP app: a background task of the gRPC App, cancelled (→ graceful
    uvicorn shutdown) by Running.stop(); uvicorn installs no signal handlers of its own."""
    import signal
    import socket

    from edge.web.app import serve_http

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    deps = HttpDeps.connect("127.0.0.1:1", "127.0.0.1:1")  # never called here
    app = create_app(deps)
    before = signal.getsignal(signal.SIGTERM)
    running = await grpc_server.start(
        grpc_server.App(
            name="edge-like",
            settings=_Settings(grace_seconds=0),
            services=[],
            background=[lambda: serve_http(app, "127.0.0.1", port)],
        ),
        port=0,
    )
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:

        async def healthy() -> bool:
            try:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await _poll(healthy, "the HTTP app")
        resp = await client.get(f"http://127.0.0.1:{port}/nope", headers={"x-request-id": "rid-9"})
        assert resp.status_code == 404 and resp.json()["request_id"] == "rid-9"
        assert resp.headers["x-request-id"] == "rid-9"
        assert signal.getsignal(signal.SIGTERM) is before
        await running.stop(grace=0)
        with pytest.raises(httpx.TransportError):
            await client.get(f"http://127.0.0.1:{port}/healthz")
    await deps.aclose()


# --------------------------------------------------------------------------------------------------
# Envoy's own spans (OpenTelemetry tracer → OTLP/HTTP collector)
# --------------------------------------------------------------------------------------------------


class _Collector:
    """Stands in for an OTLP/HTTP collector: records every export Envoy POSTs (protobuf bodies)."""

    def __init__(self) -> None:
        self.exports: list[tuple[str, bytes, bytes]] = []  # (path, content-type, body)

    async def __call__(self, scope, receive, send) -> None:  # a bare ASGI app
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.exports.append((scope["path"], dict(scope["headers"]).get(b"content-type", b""), body))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": b""})


async def test_envoy_emits_its_span_as_the_parent_of_the_upstream_call(port_bases, tmp_path_factory) -> None:
    from edge.gateway.config import Tracing

    mobile, collector = FakeMobile(), _Collector()
    mobile_server = await grpc_server.start(
        grpc_server.App(
            name="fake-mobile",
            settings=_Settings(grace_seconds=0),
            services=[
                grpc_server.Registration(
                    mobile_pb2_grpc.add_MobileServiceServicer_to_server,
                    mobile,
                    "petpro.mobile.v1.MobileService",
                )
            ],
        ),
        port=0,
    )
    otlp = HttpServer(collector, "127.0.0.1", 0, graceful_timeout=0.5)
    otlp_port = otlp.bind()
    otlp_task = asyncio.create_task(otlp.serve())
    envoy = await start_envoy(
        _stack(port_bases, tmp_path_factory),
        grpc_upstream=("127.0.0.1", mobile_server.port),
        http_upstream=("127.0.0.1", otlp_port),
        tracing=Tracing("127.0.0.1", otlp_port),
    )
    try:
        async with httpx.AsyncClient(base_url=envoy.url, trust_env=False, timeout=15.0) as client:
            trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
            resp = await client.post(
                "/v1/auth/login",
                json={"email": "a@b.co", "password": "pw"},
                headers={"traceparent": f"00-{trace_id}-{client_span}-01", "x-request-id": "r1"},
            )
            assert resp.status_code == 200, resp.text
            upstream = mobile.last("Login").metadata
            version, got_trace, envoy_span, flags = upstream["traceparent"].split("-")
            assert (version, got_trace, flags) == ("00", trace_id, "01")
            assert envoy_span != client_span  # Envoy's span sits between the client's and the service's
            assert upstream["x-request-id"] == "r1"

            # without a traceparent Envoy starts the trace itself
            await client.post("/v1/auth/login", json={"email": "a@b.co", "password": "pw"})
            assert mobile.last("Login").metadata["traceparent"].split("-")[1] != trace_id

            async def exported() -> bool:
                return any(
                    path == "/v1/traces"
                    and bytes.fromhex(trace_id) in body
                    and bytes.fromhex(envoy_span) in body
                    for path, _, body in collector.exports
                )

            await _poll(exported, "Envoy's span at the collector", within=60)
            assert all(ctype == b"application/x-protobuf" for _, ctype, _ in collector.exports)
    finally:
        envoy.stop()
        otlp.stop()
        await otlp_task
        await mobile_server.stop(grace=0)


def test_envoy_tracing_follows_the_standard_otlp_variables() -> None:
    from edge.gateway.config import Tracing, tracing_from_env

    assert tracing_from_env({}) is None
    assert tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}) == Tracing(
        "otel-collector", 4318, "/v1/traces"
    )
    assert tracing_from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9999/custom"}) == Tracing(
        "c", 9999, "/custom"
    )
    assert (
        tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
        is None
    )
    with pytest.raises(ValueError, match="http://"):
        tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318"})
