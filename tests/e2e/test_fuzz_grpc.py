"""Fuzzing every gRPC service of the mesh straight from the descriptors: random messages of the right
types (strings from hostile alphabets, UUIDs that exist and that don't, extreme numbers, undefined
enum values, nested and repeated fields) and random bytes, sent to every unary method with an
owner's token.  No answer may be INTERNAL, UNKNOWN, DATA_LOSS or UNAVAILABLE: a client's value is a
client error, and UNAVAILABLE would tell the client to retry it forever.

Messages are mostly plausible (values the declared rules accept, existing catalog ids, slot times in
the coming weeks) so that they reach the handlers and the database; the rest are hostile.
Deterministic and bounded: one seeded ``random.Random`` per method, ``FUZZ_GRPC_MESSAGES`` messages
per method (default 40).
"""

from __future__ import annotations

import os
import random
import time
import uuid
import zlib
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as _d
from google.protobuf import message_factory

import petpro_api.auth.v1.auth_pb2
import petpro_api.booking.v1.booking_pb2
import petpro_api.mobile.v1.mobile_pb2
import petpro_api.notification.v1.clinic_feed_pb2
import petpro_api.notification.v1.notification_pb2
import petpro_api.payment.v1.payment_pb2  # noqa: F401 — the descriptors of every service
from buf.validate import validate_pb2
from petpro_dev.client import CHECKUP, HAPPY_PAWS, VACCINATION
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

MESSAGES = int(os.environ.get("FUZZ_GRPC_MESSAGES", "40"))
NOT_A_CLIENT_ERROR = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE,
}

SERVICES = {  # full name → stack component serving it
    "petpro.auth.v1.AuthService": "auth",
    "petpro.booking.v1.BookingService": "booking",
    "petpro.payment.v1.PaymentService": "payment",
    "petpro.notification.v1.NotificationService": "notif",
    "petpro.mobile.v1.MobileService": "edge",
}

KNOWN_IDS = [HAPPY_PAWS, CHECKUP, VACCINATION]
ALPHABETS = [
    "abcXYZ019 -_.@",
    "\x00\x01\x07\x1b\x7f\t\n\r",
    "äöüßçøé€",
    "🐕🐈‍⬛👍🏽",
    "\u200b\u202e\ufeff\u2028",
    "'\";--/*%_\\",
    "<script>&amp;",
]


def _string(rnd: random.Random, field: _d.FieldDescriptor) -> str:
    pick = rnd.random()
    if pick < 0.3:
        return (
            rnd.choice(KNOWN_IDS)
            if rnd.random() < 0.5
            else str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        )
    if pick < 0.4:
        return ""
    if pick < 0.5:
        return rnd.choice(
            ["ann@example.com", "2026-12-10", "card", "Europe/Berlin", "x" * rnd.randint(200, 5000)]
        )
    alphabet = "".join(rnd.sample(ALPHABETS, rnd.randint(1, 3)))
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 40)))


_INTS = [0, 1, -1, 2, 100, 101, 2**31 - 1, -(2**31), 2**53]


def _rules(f: _d.FieldDescriptor) -> Any:
    opts = f.GetOptions()
    return opts.Extensions[validate_pb2.field] if opts.HasExtension(validate_pb2.field) else None


def _plausible(rnd: random.Random, f: _d.FieldDescriptor) -> Any:
    """A value the field's declared rules accept, mostly: so that messages reach the handlers."""
    r = _rules(f)
    if f.type == f.TYPE_STRING:
        s = r.string if r is not None else None
        if s is not None and s.uuid:
            return rnd.choice(KNOWN_IDS) if rnd.random() < 0.6 else str(uuid.uuid4())
        if s is not None and len(getattr(s, "in")):
            return rnd.choice(list(getattr(s, "in")))
        if s is not None and s.email:
            return f"fuzz-{rnd.getrandbits(32):x}@example.com"
        if s is not None and "[0-9]{4}-" in s.pattern:
            return f"2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        if s is not None and s.pattern == "^[A-Z]{3}$":
            return rnd.choice(["EUR", "USD", "XXX"])
        lo = s.min_len if s is not None and s.HasField("min_len") else 0
        hi = s.max_len if s is not None and s.HasField("max_len") else 40
        return "".join(
            rnd.choice("abcdefghijkl ÄÖ-🐕") for _ in range(rnd.randint(max(lo, 1), max(lo, 1, min(hi, 40))))
        )
    if f.type == f.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values if v.number != 0]
        return rnd.choice(values or [0])
    if f.type in (f.TYPE_INT32, f.TYPE_INT64):
        rules = getattr(r, "int32" if f.type == f.TYPE_INT32 else "int64") if r is not None else None
        lo = rules.gte if rules is not None and rules.HasField("gte") else 0
        hi = rules.lte if rules is not None and rules.HasField("lte") else 100
        return rnd.randint(lo, hi)
    return _scalar(rnd, f)


def _scalar(rnd: random.Random, f: _d.FieldDescriptor) -> Any:
    t = f.type
    if t == f.TYPE_STRING:
        return _string(rnd, f)
    if t == f.TYPE_BYTES:
        return rnd.randbytes(rnd.randint(0, 64))
    if t == f.TYPE_BOOL:
        return rnd.random() < 0.5
    if t in (f.TYPE_DOUBLE, f.TYPE_FLOAT):
        return rnd.choice([0.0, -1.5, 1e300 if t == f.TYPE_DOUBLE else 1e30, float("nan")])
    if t == f.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values]
        return rnd.choice([*values, 999])  # proto3 enums are open: an undefined number is valid wire data
    bits = 32 if t in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32, f.TYPE_UINT32, f.TYPE_FIXED32) else 64
    unsigned = t in (f.TYPE_UINT32, f.TYPE_FIXED32, f.TYPE_UINT64, f.TYPE_FIXED64)
    value = rnd.choice(_INTS)
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return min(max(value, lo), hi)


def _fill(msg: Any, rnd: random.Random, hostile: float, depth: int = 0) -> None:
    """``hostile``: the chance that a field gets any value of its type instead of a plausible one."""
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Timestamp":
        if rnd.random() < hostile:
            msg.seconds = rnd.choice([0, 1, 253402300799, -62135596800])
            msg.nanos = rnd.choice([0, 999_999_999])
        else:  # a half-hour slot start in the coming weeks
            msg.seconds = (int(time.time()) // 1800 + rnd.randint(48, 48 * 30)) * 1800
        return
    for f in desc.fields:
        if rnd.random() < 0.1 or (depth > 3 and f.type == f.TYPE_MESSAGE):
            continue  # leave unset
        if f.type == f.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry:
                continue
            if f.is_repeated:
                for _ in range(rnd.randint(0, 3)):
                    _fill(getattr(msg, f.name).add(), rnd, hostile, depth + 1)
            else:
                _fill(getattr(msg, f.name), rnd, hostile, depth + 1)
        else:
            make = _scalar if rnd.random() < hostile else _plausible
            if f.is_repeated:
                getattr(msg, f.name).extend(make(rnd, f) for _ in range(rnd.randint(0, 3)))
            else:
                setattr(msg, f.name, make(rnd, f))


def _methods() -> list[tuple[str, _d.MethodDescriptor]]:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    out = []
    for name in SERVICES:
        for m in pool.FindServiceByName(name).methods:
            if not m.client_streaming and not m.server_streaming:
                out.append((name, m))
    return out


@pytest.mark.parametrize(("service", "method"), _methods(), ids=lambda v: getattr(v, "name", v))
async def test_no_message_gets_a_server_error(api: Api, owner_token_async, service: str, method):
    cls = message_factory.GetMessageClass(method.input_type)
    out_cls = message_factory.GetMessageClass(method.output_type)
    rnd = random.Random(zlib.crc32(method.full_name.encode()))
    md = (("authorization", f"Bearer {owner_token_async}"),)
    seen: dict[str, int] = {}
    async with grpc.aio.insecure_channel(api.stack.address(SERVICES[service])) as ch:
        call = ch.unary_unary(
            f"/{service}/{method.name}",
            request_serializer=lambda b: b,
            response_deserializer=out_cls.FromString,
        )
        for i in range(MESSAGES):
            if i % 10 == 9:  # now and then not a valid message at all
                payload = rnd.randbytes(rnd.randint(1, 40))
            else:
                msg = cls()
                # mostly plausible messages (they reach the handlers and the database), some hostile
                _fill(msg, rnd, hostile=rnd.choice([0.0, 0.0, 0.1, 0.5, 1.0]))
                payload = msg.SerializeToString()
            try:
                await call(payload, metadata=md, timeout=20)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                code = err.code()
                assert code not in NOT_A_CLIENT_ERROR, (method.full_name, payload, err.details())
            seen[code.name] = seen.get(code.name, 0) + 1
    print(f"\n{method.full_name}: {seen}")
    assert sum(seen.values()) == MESSAGES, seen


@pytest.fixture(scope="session")
async def owner_token_async(api: Api) -> str:
    return (await api.user()).token
