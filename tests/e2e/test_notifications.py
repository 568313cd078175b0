"""booking.created → notif_worker → email, push inbox, clinic feed: exactly once in effect, in the
face of duplicates, poison events, a killed worker and a restarted broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from kafka import KafkaProducer

from petpro.convert import ts
from petpro.events import cloudevent_headers, dead_letters, group_lag
from petpro_api.booking.v1 import booking_pb2, events_pb2
from petpro_api.common.v1 import money_pb2
from petpro_api.notification.v1 import clinic_feed_pb2, clinic_feed_pb2_grpc
from tests.e2e.conftest import HAPPY_PAWS, Api, confirmed_booking, eventually, mails_to

pytestmark = pytest.mark.e2e
FLUFFY = "7b0c1f0e-2a57-4e0c-9a55-1c1f3b0d5e02"


async def staff_token(
    api: Api, email: str = "staff@happypaws.example", password: str = "happypaws-demo"
) -> str:
    r = await api.c.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def feed(api: Api, token: str, clinic: str, after: int, count: int, timeout: float = 20):  # type: ignore[no-untyped-def]
    """Up to ``count`` events of a ClinicFeed subscription: what arrived before ``timeout``."""
    out: list[clinic_feed_pb2.ClinicEvent] = []
    async with grpc.aio.insecure_channel(api.stack.address("notif")) as ch:
        call = clinic_feed_pb2_grpc.ClinicFeedServiceStub(ch).Subscribe(
            clinic_feed_pb2.SubscribeRequest(clinic_id=clinic, after_cursor=after),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        try:
            async with asyncio.timeout(timeout):
                while len(out) < count:
                    resp = await call.read()
                    if resp is grpc.aio.EOF:
                        break
                    out.append(resp.event)
        except TimeoutError:
            pass
        finally:
            call.cancel()
    return out


async def test_confirmed_booking_reaches_mailbox_inbox_and_clinic_feed_once(api: Api):
    token = await staff_token(api)
    owner, _, booking_id = await confirmed_booking(api)

    async def one_mail():  # type: ignore[no-untyped-def]
        return mails_to(api.stack, owner.email)

    mails = await eventually(one_mail)
    assert len(mails) == 1
    body = mails[0].body()
    assert "Happy Paws Veterinary Clinic" in body and "General check-up" in body and "Rex" in body
    assert "€45.00" in body and booking_id in body and booking_id.split("-")[0].upper() in body
    assert mails[0].message["X-PetPro-Booking-Id"] == booking_id

    async def pushes():  # type: ignore[no-untyped-def]
        return (await api.c.get("/v1/me/notifications", headers=owner.auth)).json()["notifications"]

    inbox = await eventually(pushes)
    assert [n["data"]["booking_id"] for n in inbox] == [booking_id]

    # replay from the start up to our booking: it is there exactly once, cursors strictly increase
    seen: list[clinic_feed_pb2.ClinicEvent] = []

    async def ours_in_feed():  # type: ignore[no-untyped-def]
        after = seen[-1].cursor if seen else 0
        seen.extend(await feed(api, token, HAPPY_PAWS, after, 100, timeout=1))
        return any(e.booking.booking_id == booking_id for e in seen)

    await eventually(ours_in_feed)
    cursors = [e.cursor for e in seen]
    assert cursors == sorted(set(cursors))
    assert sum(e.booking.booking_id == booking_id for e in seen) == 1


async def test_feed_replays_after_a_cursor_then_streams_live_without_gap_or_duplicate(api: Api):
    token = await staff_token(api)
    _, _, first = await confirmed_booking(api)
    history = await _feed_until(api, token, first)
    cursor = history[-1].cursor

    async with grpc.aio.insecure_channel(api.stack.address("notif")) as ch:
        call = clinic_feed_pb2_grpc.ClinicFeedServiceStub(ch).Subscribe(
            clinic_feed_pb2.SubscribeRequest(clinic_id=HAPPY_PAWS, after_cursor=cursor - 1),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        replayed = await call.read()
        assert (replayed.event.cursor, replayed.event.booking.booking_id) == (cursor, first)
        # now live: two new bookings arrive on the open stream, in order, once each
        _, _, second = await confirmed_booking(api)
        _, _, third = await confirmed_booking(api)
        live = []
        async with asyncio.timeout(20):
            while {second, third} - {e.booking.booking_id for e in live}:
                live.append((await call.read()).event)
        call.cancel()
    ids = [e.booking.booking_id for e in live]
    assert ids.count(second) == 1 and ids.count(third) == 1
    assert [e.cursor for e in live] == list(range(cursor + 1, cursor + 1 + len(live)))


async def _feed_until(api: Api, token: str, booking_id: str) -> list[clinic_feed_pb2.ClinicEvent]:
    seen: list[clinic_feed_pb2.ClinicEvent] = []

    async def found():  # type: ignore[no-untyped-def]
        after = seen[-1].cursor if seen else 0
        seen.extend(await feed(api, token, HAPPY_PAWS, after, 100, timeout=1))
        return any(e.booking.booking_id == booking_id for e in seen)

    await eventually(found)
    return seen[: next(i for i, e in enumerate(seen) if e.booking.booking_id == booking_id) + 1]


async def test_feed_is_only_for_that_clinics_staff(api: Api):
    fluffy_staff = await staff_token(api, "staff@fluffycuts.example", "fluffycuts-demo")
    owner = await api.user()
    for token, code in (
        (fluffy_staff, grpc.StatusCode.NOT_FOUND),  # another clinic's: not revealed
        (owner.token, grpc.StatusCode.NOT_FOUND),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await feed(api, token, HAPPY_PAWS, 0, 1, timeout=5)
        assert exc.value.code() == code
    # Fluffy Cuts' staff sees Fluffy's feed (other tests of the session may have booked there), never
    # one of Happy Paws' events
    r = await api.c.get(f"/v1/clinics/{HAPPY_PAWS}/services", params={"page_size": 100})
    happy_services = {s["service_id"] for s in r.json()["services"]}
    assert happy_services
    mine = await feed(api, fluffy_staff, FLUFFY, 0, 1000, timeout=1.5)
    assert not [e for e in mine if e.booking.service_id in happy_services], mine


def _event(owner_email: str, owner_id: str) -> tuple[str, bytes]:
    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    booking_id = str(uuid.uuid4())
    msg = events_pb2.BookingCreated(
        event_id=event_id,
        occurred_at=ts(now),
        booking_id=booking_id,
        clinic_id=HAPPY_PAWS,
        clinic_name="Happy Paws Veterinary Clinic",
        clinic_time_zone="Europe/Berlin",
        service=events_pb2.BookingCreated.Service(service_id=str(uuid.uuid4()), name="General check-up"),
        slot_start_time=ts(now),
        slot_end_time=ts(now),
        pet=events_pb2.BookingCreated.Pet(
            pet_id=str(uuid.uuid4()), name="Rex", species=booking_pb2.SPECIES_DOG
        ),
        owner=events_pb2.BookingCreated.Owner(user_id=owner_id, email=owner_email, name="Ann"),
        amount=money_pb2.Money(amount_minor=4500, currency="EUR"),
    )
    return booking_id, msg.SerializeToString()


def _produce(api: Api, messages: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=api.stack.env()["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    for key, value in messages:
        producer.send(
            "booking.created",
            key=key.encode(),
            value=value,
            headers=cloudevent_headers(str(uuid.uuid4()), "test", "/tests"),
        )
    producer.flush()
    producer.close()


async def test_duplicate_delivery_sends_one_email_and_poison_goes_to_the_dlq(api: Api):
    owner = await api.user()
    booking_id, payload = _event(owner.email, owner.user_id)
    poison = (booking_id, b"\x00not a protobuf event")
    # the same event twice (at-least-once delivery), a poison pill between them
    await asyncio.to_thread(_produce, api, [(booking_id, payload), poison, (booking_id, payload)])

    async def mailed():  # type: ignore[no-untyped-def]
        return mails_to(api.stack, owner.email)

    await eventually(mailed)

    def poisoned() -> list[dict]:  # type: ignore[type-arg]
        letters = dead_letters(api.stack.env()["KAFKA_BOOTSTRAP_SERVERS"], "booking.created.dlq")
        return [d for d in letters if d["value"] == poison[1]]

    dlq = await eventually(lambda: asyncio.to_thread(poisoned))
    assert dlq[0]["error_type"] == "PoisonEvent" and "undecodable" in dlq[0]["error"]

    # `petpro dlq` lists it with its error; replaying sends it through the worker again (still poison)
    env = {**os.environ, **api.stack.env()}
    listing = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "petpro_dev", "dlq"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0 and "PoisonEvent" in listing.stdout, listing
    letter = f"{dlq[0]['partition']}:{dlq[0]['offset']}"
    replay = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "petpro_dev", "dlq", "replay", letter],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0 and "replayed 1 " in replay.stdout, replay

    async def dead_twice():  # type: ignore[no-untyped-def]
        return len(await asyncio.to_thread(poisoned)) >= 2

    await eventually(dead_twice)

    # let the consumer commit past the duplicate, then count: one email, one push
    await _consumer_caught_up(api)
    assert len(mails_to(api.stack, owner.email)) == 1
    inbox = (await api.c.get("/v1/me/notifications", headers=owner.auth)).json()["notifications"]
    assert [n["data"]["booking_id"] for n in inbox] == [booking_id]


async def _consumer_caught_up(api: Api) -> None:
    """Await the notif-worker group's committed offsets reaching the end of every partition."""
    bootstrap = api.stack.env()["KAFKA_BOOTSTRAP_SERVERS"]

    def lag() -> int:
        return group_lag(bootstrap, "notif-worker", "booking.created")

    await eventually(lambda: _zero(lag), timeout=120)


async def _zero(fn) -> bool:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(fn) == 0


async def test_worker_killed_mid_batch_still_notifies_every_booking_exactly_once(api: Api):
    """Push and clinic feed are exactly once (recorded in the same transaction as the claim).  Email
    leaves the process over SMTP, which has no transactions: a message accepted by the server in the
    instant before the worker records it is sent again after the restart — with the same Message-ID,
    so it is one message to the owner's mail client.  At most the in-flight sends can repeat."""
    owner = await api.user()
    events = [_event(owner.email, owner.user_id) for _ in range(30)]
    notif_pid = api.stack.pid("notif")
    assert notif_pid
    produce = asyncio.create_task(asyncio.to_thread(_produce, api, events))

    async def some_mail():  # type: ignore[no-untyped-def]
        return mails_to(api.stack, owner.email)

    await eventually(some_mail, interval=0.01)  # the worker is mid-way through the burst
    os.kill(notif_pid, signal.SIGKILL)
    await produce
    await asyncio.to_thread(api.stack.up, ["notif"])

    expected = sorted(b for b, _ in events)

    async def all_mailed():  # type: ignore[no-untyped-def]
        return (
            sorted({m.message["X-PetPro-Booking-Id"] for m in mails_to(api.stack, owner.email)}) == expected
        )

    await eventually(all_mailed, timeout=60)
    await _consumer_caught_up(api)
    mails = mails_to(api.stack, owner.email)
    message_ids: dict[str, set[str]] = {}
    for m in mails:
        message_ids.setdefault(m.message["X-PetPro-Booking-Id"], set()).add(m.message["Message-ID"])
    assert all(len(ids) == 1 for ids in message_ids.values())  # one message per booking
    assert len(mails) - len(expected) <= 16  # repeats bounded by the sends in flight (NOTIF_CONCURRENCY)
    inbox = await api.inbox(owner)
    assert sorted(n["data"]["booking_id"] for n in inbox) == expected  # exactly once


async def test_broker_restart_during_confirmations_loses_no_event(api: Api):
    owners = [await api.user() for _ in range(3)]
    kafka_pid = api.stack.pid("kafka")
    assert kafka_pid
    os.kill(kafka_pid, signal.SIGKILL)  # memory storage: messages and offsets are gone with it
    confirmed = [await confirmed_booking(api, o) for o in owners]  # outbox keeps the events
    await asyncio.to_thread(api.stack.up, ["kafka"])

    async def all_mailed():  # type: ignore[no-untyped-def]
        return all(len(mails_to(api.stack, o.email)) >= 1 for o, _, _ in confirmed)

    await eventually(all_mailed, timeout=90)
    await _consumer_caught_up(api)
    for o, _, booking_id in confirmed:
        mails = mails_to(api.stack, o.email)
        assert [m.message["X-PetPro-Booking-Id"] for m in mails] == [booking_id]


async def test_clinic_feed_of_another_clinic_is_not_found_as_on_the_rest_api(api: Api):
    """Staff of one clinic subscribing to another's feed get NOT_FOUND, as its REST management calls
    answer 404 (petpro.authn.require_clinic): the other clinic's existence is not revealed."""
    token = await staff_token(api, "staff@fluffycuts.example", "fluffycuts-demo")
    rest = await api.c.get(
        f"/v1/clinics/{HAPPY_PAWS}/bookings",
        headers={"Authorization": f"Bearer {token}"},
        params={"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z"},
    )
    assert (rest.status_code, rest.json()["reason"]) == (404, "CLINIC_NOT_FOUND"), rest.text
    async with grpc.aio.insecure_channel(api.stack.address("notif")) as ch:
        call = clinic_feed_pb2_grpc.ClinicFeedServiceStub(ch).Subscribe(
            clinic_feed_pb2.SubscribeRequest(clinic_id=HAPPY_PAWS),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
