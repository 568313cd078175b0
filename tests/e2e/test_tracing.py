"""Distributed tracing across the mesh: the spans every process writes (OTLP-JSON files under the
stack's ``traces/``) form one connected trace per request, across gRPC hops and the Kafka hop."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from petpro_dev.devstack.traces import SpanRecord, ancestry, by_trace, load_spans, roots
from tests.e2e.conftest import CHECKUP, Api, confirmed_booking, eventually

pytestmark = pytest.mark.e2e


def traces_dir(api: Api) -> Path:
    return Path(os.environ.get("PETPRO_TRACES_DIR") or api.stack.ctx.home / "traces")


def hop(span: SpanRecord) -> tuple[str, str, str]:
    return span.service, span.kind, span.name


async def test_one_booking_is_one_connected_trace_from_the_webhook_request_to_the_smtp_send(api: Api):
    _, _, booking_id = await confirmed_booking(api)

    async def complete_trace() -> tuple[SpanRecord, list[SpanRecord]] | None:
        spans = load_spans(traces_dir(api))
        sends = [
            s for s in spans if s.name == "smtp send" and s.attributes.get("petpro.booking_id") == booking_id
        ]
        if not sends:
            return None
        trace = by_trace(spans)[sends[0].trace_id]
        # complete once every span's parent arrived (each process flushes on its own schedule)
        top = roots(trace)
        if len(top) != 1 or top[0].parent_id:
            return None
        # and the side branches (not on the chain below) flushed by their processes too
        if not (
            {"edge", "payment_svc", "booking_svc", "notif_worker"} <= {s.service for s in trace}
            and any(s.service == "payment_svc" and s.kind == "server" for s in trace)
        ):
            return None
        return sends[0], trace

    send, trace = await eventually(complete_trace, timeout=60)

    # one trace: every span of the booking shares the trace id, one root, every parent recorded
    assert {s.trace_id for s in trace} == {send.trace_id}
    (root,) = roots(trace)
    assert hop(root) == ("edge", "server", "POST /webhooks/stripe")

    # the parent chain from the SMTP send back to the REST request crosses every process and Kafka
    chain = [hop(s) for s in reversed(ancestry(trace, send))]
    assert chain == [
        ("edge", "server", "POST /webhooks/stripe"),
        ("edge", "client", "/petpro.booking.v1.BookingService/ConfirmBooking"),
        ("booking_svc", "server", "/petpro.booking.v1.BookingService/ConfirmBooking"),
        ("booking_svc", "producer", "publish booking.created"),
        ("notif_worker", "consumer", "process booking.created"),
        ("notif_worker", "client", "smtp send"),
    ]
    consume = next(s for s in trace if s.kind == "consumer")
    assert consume.attributes["petpro.booking_id"] == booking_id
    assert consume.attributes["messaging.destination.name"] == "booking.created"

    # the other hops of the same request are in the tree too: the payment service verifying the
    # webhook, SQL statements in each service that ran them, the Redis fan-out publish
    services = {s.service for s in trace}
    assert {"edge", "payment_svc", "booking_svc", "notif_worker"} <= services
    assert any(
        s.service == "payment_svc"
        and s.name == "/petpro.payment.v1.PaymentService/HandleWebhook"
        and s.kind == "server"
        for s in trace
    )
    assert any(s.service == "booking_svc" and s.name == "INSERT" for s in trace)  # the booking + outbox row
    assert any(s.service == "notif_worker" and s.name == "PUBLISH" for s in trace)  # Redis fan-out


async def test_a_client_traceparent_is_continued_through_envoy_the_bff_and_the_services(api: Api):
    owner = await api.user()
    pet = await api.pet(owner)
    slot = await api.unique_slot()
    trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    r = await api.c.post(
        "/v1/bookings",
        json={"service_id": CHECKUP, "pet_id": pet, "slot": slot, "payment_method": "card"},
        headers={
            **owner.auth,
            "Idempotency-Key": uuid.uuid4().hex,
            "traceparent": f"00-{trace_id}-{client_span}-01",
        },
    )
    assert r.status_code == 201, r.text

    async def hops() -> list[SpanRecord] | None:
        trace = by_trace(load_spans(traces_dir(api))).get(trace_id, [])
        names = {hop(s) for s in trace}
        wanted = {
            ("edge", "server", "/petpro.mobile.v1.MobileService/CreateBooking"),
            ("booking_svc", "server", "/petpro.booking.v1.BookingService/ReserveSlot"),
            ("payment_svc", "server", "/petpro.payment.v1.PaymentService/CreatePaymentSession"),
        }
        return trace if wanted <= names and len(roots(trace)) == 1 else None

    trace = await eventually(hops, timeout=120)
    (top,) = roots(trace)
    # the BFF's span is the child of the client's span: Envoy passed the traceparent on unchanged
    assert hop(top) == ("edge", "server", "/petpro.mobile.v1.MobileService/CreateBooking")
    assert top.parent_id == client_span
    reserve = next(
        s for s in trace if s.name == "/petpro.booking.v1.BookingService/ReserveSlot" and s.kind == "server"
    )
    assert [hop(s) for s in reversed(ancestry(trace, reserve))] == [
        ("edge", "server", "/petpro.mobile.v1.MobileService/CreateBooking"),
        ("edge", "client", "/petpro.booking.v1.BookingService/ReserveSlot"),
        ("booking_svc", "server", "/petpro.booking.v1.BookingService/ReserveSlot"),
    ]
