"""The booking events consumer joining its group early (petpro.events.EarlyJoin, started by
``python -m notif_worker`` before the worker's imports): the thread polls until taken (answering
rebalances), its partitions paused as assigned and resumed when taken, a record a poll returned all the
same is read again, the consumer's first run takes it over (ready at once when it is in its group
already), and a run after a crash makes its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from kafka import ConsumerRebalanceListener, TopicPartition

from notif_worker.adapters.consumer import BookingEventsConsumer
from petpro import events

TP = TopicPartition("booking.created", 0)


class Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class GroupConsumer:
    """A group consumer whose group answers when ``assign_on_poll`` polls have run (never: None)."""

    def __init__(self, assign_on_poll: int | None = 2) -> None:
        self.assign_on_poll = assign_on_poll
        self.topics: list[str] = []
        self.listener: ConsumerRebalanceListener | None = None
        self.polls = 0
        self.seeks: list[tuple[Any, int]] = []
        self.assigned = threading.Event()
        self.polled = threading.Event()
        self.closed = False
        self.paused_: set[Any] = set()

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener | None = None) -> None:
        self.topics, self.listener = list(topics), listener

    def subscription(self) -> set[str]:
        return set(self.topics)

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Rec]]:
        self.polls += 1
        self.polled.set()
        if self.polls == self.assign_on_poll:
            assert self.listener is not None
            self.listener.on_partitions_assigned({TP})
            self.assigned.set()
            return {TP: [Rec(7), Rec(8)]}  # fetched in the same poll as the assignment
        self.assigned.wait(timeout_ms / 1000)
        return {}

    def pause(self, *tps: Any) -> None:
        self.paused_ |= set(tps)

    def paused(self) -> set[Any]:
        return set(self.paused_)

    def resume(self, *tps: Any) -> None:
        self.paused_ -= set(tps)

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))

    def close(self, autocommit: bool = False) -> None:
        self.closed = True


def test_in_its_group_its_partitions_wait_paused_until_taken_and_nothing_is_skipped() -> None:
    consumer = GroupConsumer(assign_on_poll=2)
    joining = events.EarlyJoin(lambda: consumer, ["booking.rescheduled", "booking.created"]).start()
    assert consumer.assigned.wait(30)
    assert consumer.paused() == {TP}  # assigned: paused in the listener, before the poll's fetch
    taken, in_group = joining.take()
    assert taken is consumer and in_group
    assert consumer.topics == ["booking.created", "booking.rescheduled"]
    assert consumer.seeks == [(TP, 7)]  # a record a poll returned all the same: read again
    assert consumer.paused() == set()  # resumed for its user


def test_taken_before_the_group_answered_it_is_not_in_its_group_yet() -> None:
    consumer = GroupConsumer(assign_on_poll=None)
    joining = events.EarlyJoin(lambda: consumer, ["booking.created"]).start()
    taken, in_group = joining.take()
    assert taken is consumer and not in_group and not consumer.seeks


def test_a_failure_to_make_or_join_the_consumer_is_raised_by_take() -> None:
    def make() -> Any:
        raise ConnectionError("no broker")

    joining = events.EarlyJoin(make, ["booking.created"]).start()
    with pytest.raises(ConnectionError):
        joining.take()


class Joining:
    def __init__(self, consumer: GroupConsumer, in_group: bool) -> None:
        self.consumer, self.in_group, self.taken = consumer, in_group, 0

    def take(self) -> tuple[GroupConsumer, bool]:
        self.taken += 1
        return self.consumer, self.in_group


class Handlers:
    async def notify(self, *args: Any, **kwargs: Any) -> None:
        pass


async def run_until_polled(worker: BookingEventsConsumer, consumer: GroupConsumer) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run())
    assert await asyncio.to_thread(consumer.polled.wait, 30)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_first_run_takes_the_consumer_over_ready_at_once_when_in_its_group() -> None:
    early = GroupConsumer(assign_on_poll=None)
    early.subscribe(["booking.created"])
    joining = Joining(early, in_group=True)
    worker = BookingEventsConsumer(
        Handlers(),
        lambda: pytest.fail("the first run takes the early consumer"),
        lambda: None,  # type: ignore[arg-type,return-value]
        "dlq",
        joining=joining,  # type: ignore[arg-type]
    )
    task = await run_until_polled(worker, early)
    try:
        await asyncio.wait_for(worker.wait_joined(), timeout=30)
        assert joining.taken == 1 and early.listener is not None  # its own listener from now on
    finally:
        await stop(task)


async def test_not_in_its_group_yet_it_is_ready_when_the_group_answers_and_a_rerun_makes_its_own() -> None:
    early, own = GroupConsumer(assign_on_poll=None), GroupConsumer(assign_on_poll=1)
    early.subscribe(["booking.created"])
    own.subscribe(["booking.created"])
    joining = Joining(early, in_group=False)
    worker = BookingEventsConsumer(Handlers(), lambda: own, lambda: None, "dlq", joining=joining)  # type: ignore[arg-type]
    task = await run_until_polled(worker, early)
    assert not worker.joined.is_set()  # polling, no group yet: not ready
    await stop(task)
    task = await run_until_polled(worker, own)  # a run after a crash: a consumer of its own
    try:
        await asyncio.wait_for(worker.wait_joined(), timeout=30)
        assert joining.taken == 1
    finally:
        await stop(task)
