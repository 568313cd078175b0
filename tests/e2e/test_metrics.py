"""Prometheus metrics of the running mesh: RED per RPC from the kit's interceptor, outbox lag,
consumer lag and the dead-letter topic's size (docs/operations.md's Metrics section lists them)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from petpro.events import cloudevent_headers
from tests.e2e.conftest import Api, confirmed_booking, eventually

pytestmark = pytest.mark.e2e


async def scrape(api: Api, component: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a service's /metrics: (name, sorted labels) → value."""
    s = api.stack.ctx.settings
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://{s.host}:{s.port(f'{component}_metrics')}/metrics")
    assert r.status_code == 200
    return {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for fam in text_string_to_metric_families(r.text)
        for m in fam.samples
    }


def value(samples, name: str, **labels: str) -> float | None:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_red_metrics_per_rpc_count_successes_errors_and_durations(api: Api):
    await confirmed_booking(api)
    owner = await api.user()
    missing = await api.c.get(f"/v1/reservations/{uuid.uuid4()}", headers=owner.auth)
    assert missing.status_code == 404

    m = await scrape(api, "booking")
    confirm = "/petpro.booking.v1.BookingService/ConfirmBooking"
    assert value(m, "grpc_server_handled_total", grpc_method=confirm, grpc_code="OK") >= 1
    assert value(m, "grpc_server_handling_seconds_count", grpc_method=confirm) >= 1
    assert value(m, "grpc_server_handling_seconds_bucket", grpc_method=confirm, le="+Inf") >= 1
    # the client's mistake is counted as an error of its RPC, by code
    assert (
        value(
            m,
            "grpc_server_handled_total",
            grpc_method="/petpro.booking.v1.BookingService/GetReservation",
            grpc_code="NOT_FOUND",
        )
        >= 1
    )


async def test_outbox_lag_and_consumer_lag_settle_at_zero_once_events_are_delivered(api: Api):
    await confirmed_booking(api)

    async def settled():  # type: ignore[no-untyped-def]
        booking, notif = await scrape(api, "booking"), await scrape(api, "notif")
        pending = value(booking, "outbox_unpublished_events")
        age = value(booking, "outbox_oldest_unpublished_age_seconds")
        lag = value(notif, "kafka_consumer_lag_messages", topic="booking.created", group="notif-worker")
        return (pending, age, lag) if (pending, age, lag) == (0, 0, 0) else None

    assert await eventually(settled, timeout=120) == (0, 0, 0)
    notif = await scrape(api, "notif")
    assert value(notif, "events_consumed_total", topic="booking.created", outcome="processed") >= 1


async def test_dlq_size_counts_a_dead_lettered_event(api: Api):
    async def dlq_size() -> float | None:
        return value(await scrape(api, "notif"), "dlq_messages", topic="booking.created.dlq")

    async def measured() -> tuple[float] | None:  # a tuple: a size of 0 is a value too
        size = await dlq_size()
        return (size,) if size is not None else None

    (before,) = await eventually(measured, timeout=120)

    def poison() -> None:
        p = KafkaProducer(bootstrap_servers=api.stack.env()["KAFKA_BOOTSTRAP_SERVERS"].split(","))
        p.send(
            "booking.created",
            key=uuid.uuid4().hex.encode(),
            value=b"\x00not an event",
            headers=cloudevent_headers(str(uuid.uuid4()), "test", "/tests"),
        )
        p.flush()
        p.close()

    await asyncio.to_thread(poison)

    async def grew() -> float | None:
        size = await dlq_size()
        return size if size is not None and size >= before + 1 else None

    assert await eventually(grew, timeout=120) >= before + 1
