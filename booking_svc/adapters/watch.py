"""Reservation state changes from PostgreSQL: the ``reservation_state_notify`` trigger (migrations 0011,
0013) sends ``NOTIFY booking_reservation_change, '<lock id>|<state>|<payment id>|<booking id>'`` with
every committed state change, and each booking replica LISTENs on one connection of its own and wakes
the GetReservation long-polls waiting on that reservation in this process, with what the change says
(:class:`booking_svc.ports.ReservationNews`: the long-poll answers from it without reading again).  A
notification reaches every replica, so a long-poll answers whichever replica committed the change.

Without the LISTEN connection (behind a transaction pooler without ``DATABASE_DIRECT_URL``, or while it
reconnects) waits are cut to ``poll_seconds``: the long-polls read again that often instead, and on
every (re)connection all of them read again (a change may have been missed meanwhile)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from booking_svc.domain import ReservationState
from booking_svc.ports import ReservationNews
from petpro.db import direct_url

log = logging.getLogger("booking_svc.watch")

CHANNEL = "booking_reservation_change"  # migration 0013 (0011's booking_reservation_state: the lock id alone)
_STATES = {s.value: s for s in ReservationState}


def parse(payload: str) -> tuple[str, ReservationNews | None]:
    """The lock id a notification is about and what it says (None: nothing usable, read again)."""
    key, _, rest = payload.partition("|")
    try:
        state, payment, booking = rest.split("|")
        return key, ReservationNews(
            _STATES[state],
            uuid.UUID(payment) if payment else None,
            uuid.UUID(booking) if booking else None,
        )
    except (ValueError, KeyError):  # not a payload of this release's trigger
        return key, None


class _Watch:
    __slots__ = ("_changes", "_event", "_news", "_unknown")

    def __init__(self, changes: PgReservationChanges) -> None:
        self._changes = changes
        self._event = asyncio.Event()
        self._news: ReservationNews | None = None
        self._unknown = False  # a wake that said nothing (a reconnection, a shutdown): read again

    @property
    def ended(self) -> bool:
        return self._changes.closed

    def wake(self, news: ReservationNews | None = None) -> None:
        if news is None:
            self._unknown = True
        else:
            self._news = news  # notifications come in commit order: the latest is the state now
        self._event.set()

    def news(self) -> ReservationNews | None:
        news = None if self._unknown else self._news
        self._news, self._unknown = None, False
        return news

    async def changed(self, timeout: float) -> bool:
        if self._changes.closed:
            return True
        if not self._changes.listening.is_set():
            timeout = min(timeout, self._changes.poll_seconds)
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class PgReservationChanges:
    """The :class:`booking_svc.ports.ReservationChanges` of a booking replica; :meth:`run` is its
    background task, :meth:`close` (at shutdown) lets every waiting long-poll answer at once."""

    def __init__(self, url: str, *, poll_seconds: float = 1.0, retry_seconds: float = 1.0) -> None:
        # LISTEN needs a session of its own: behind a transaction pooler, the server's direct URL
        self.dsn = direct_url(url)
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.closed = False
        self._watches: dict[str, set[_Watch]] = {}

    @asynccontextmanager
    async def watch(self, lock_id: uuid.UUID) -> AsyncIterator[_Watch]:
        key = str(lock_id)
        w = _Watch(self)
        self._watches.setdefault(key, set()).add(w)
        try:
            yield w
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(w)
                if not watches:
                    del self._watches[key]

    def _wake(self, payload: str) -> None:
        key, news = parse(payload)
        for w in self._watches.get(key, ()):
            w.wake(news)

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for w in watches:
                w.wake()

    async def run(self) -> None:
        if self.dsn is None:
            log.warning("reservation changes: transaction pooler without DATABASE_DIRECT_URL: no LISTEN, "
                        "GetReservation long-polls read every %.1fs", self.poll_seconds)  # fmt: skip
            return
        while not self.closed:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._wake_all()  # a change may have come while nobody listened
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reservation changes: LISTEN connection lost: %s", exc)
            finally:
                self.listening.clear()
            await asyncio.sleep(self.retry_seconds)

    async def close(self) -> None:
        self.closed = True
        self._wake_all()
