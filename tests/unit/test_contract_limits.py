"""Every value a client can send is bounded in the contract itself, so the OpenAPI document shows
the limits and protovalidate enforces them in every service: each string/bytes field of every
request message (recursively) declares a length bound, and each repeated field ``max_items``."""

from __future__ import annotations

import importlib

from google.protobuf import descriptor as _d

from buf.validate import validate_pb2
from edge.gateway.openapi import build_openapi, default_descriptor_path

MODULES = (
    "auth.v1.auth_pb2",
    "auth.v1.clinic_staff_pb2",
    "booking.v1.booking_pb2",
    "booking.v1.clinic_admin_pb2",
    "payment.v1.payment_pb2",
    "mobile.v1.mobile_pb2",
    "notification.v1.notification_pb2",
    "notification.v1.clinic_feed_pb2",
)


def _rules(f: _d.FieldDescriptor):
    opts = f.GetOptions()
    return opts.Extensions[validate_pb2.field] if opts.HasExtension(validate_pb2.field) else None


def _bounded(f: _d.FieldDescriptor) -> bool:
    r = _rules(f)
    if r is None:
        return False
    if f.type == f.TYPE_STRING:
        s = r.repeated.items.string if f.is_repeated else r.string
        return (
            s.HasField("max_len")
            or s.HasField("len")
            or s.uuid
            or s.HasField("const")
            or len(s.__getattribute__("in")) > 0
        )
    if f.type == f.TYPE_BYTES:
        return r.bytes.HasField("max_len")
    return True


def _unbounded_fields() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []

    def walk(d: _d.Descriptor) -> None:
        if d.full_name in seen or d.full_name.startswith("google.protobuf."):
            return
        seen.add(d.full_name)
        for f in d.fields:
            if f.type in (f.TYPE_STRING, f.TYPE_BYTES) and not _bounded(f):
                out.append(f"{f.full_name}: no max_len")
            if f.is_repeated and not (f.message_type and f.message_type.GetOptions().map_entry):
                r = _rules(f)
                if r is None or not r.repeated.HasField("max_items"):
                    out.append(f"{f.full_name}: no max_items")
            if f.message_type is not None:
                walk(f.message_type)

    for name in MODULES:
        module = importlib.import_module(f"petpro_api.{name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                walk(method.input_type)
    return out


def test_every_request_string_and_list_is_bounded_in_the_protos():
    assert _unbounded_fields() == []


def test_the_openapi_document_shows_the_limits():
    doc = build_openapi(default_descriptor_path().read_bytes())
    schemas = doc["components"]["schemas"]
    pet = next(s for name, s in schemas.items() if name.endswith("CreatePetRequest"))
    assert pet["properties"]["name"]["maxLength"] == 60
    assert pet["properties"]["birth_date"]["maxLength"] == 10
