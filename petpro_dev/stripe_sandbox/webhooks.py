"""Webhook delivery: signed POSTs of event payloads, in the background, retried with backoff.

Events sharing an order key (the Checkout Session they concern) are delivered one after the other, in
the order they were created: the next one starts when the previous one succeeded or gave up.  Each
attempt is recorded (status code or connection error, duration) for ``/_sandbox/events``.  Deliveries
still pending when the sandbox stops are resumed on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from petpro_dev.stripe_sandbox.config import RetryPolicy
from petpro_dev.stripe_sandbox.signing import signature_header
from petpro_dev.stripe_sandbox.store import FAILED, PENDING, SUCCEEDED, Store, StoredEvent

log = logging.getLogger("petpro.stripe_sandbox.webhooks")

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


class WebhookDispatcher:
    def __init__(
        self, store: Store, *, url: str, secret: str, policy: RetryPolicy, client: httpx.AsyncClient
    ) -> None:
        self.store = store
        self.url = url
        self.secret = secret
        self.policy = policy
        self.client = client
        self._tails: dict[str, asyncio.Task[None]] = {}  # order key → its latest delivery
        self._tasks: set[asyncio.Task[None]] = set()

    def enqueue(self, event: StoredEvent) -> asyncio.Task[None]:
        """Deliver ``event`` after the earlier events with the same order key."""
        self.store.set_delivery(event.id, PENDING)
        key = event.order_key or event.id
        prev = self._tails.get(key)
        task = asyncio.get_running_loop().create_task(self._run(prev, event.id), name=f"webhook {event.id}")
        self._tails[key] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._tails.get(key) is t:
                del self._tails[key]

        task.add_done_callback(done)
        return task

    def resume_pending(self) -> int:
        pending = self.store.pending_events()
        for event in pending:
            self.enqueue(event)
        return len(pending)

    async def drain(self) -> None:
        """Wait until every delivery under way succeeded or gave up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop delivering; what is still pending stays pending in the store."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, prev: asyncio.Task[None] | None, event_id: str) -> None:
        if prev is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(prev)
        await self._deliver(event_id)

    async def _deliver(self, event_id: str) -> None:
        stored = self.store.event(event_id)
        if stored is None:
            return
        payload = stored.body.encode()
        for n in range(1, self.policy.max_attempts + 1):
            if await self._attempt(stored, payload):
                self.store.set_delivery(event_id, SUCCEEDED)
                return
            if n < self.policy.max_attempts:
                await asyncio.sleep(self.policy.delay(n))
        log.warning(
            "webhook %s (%s) gave up after %d attempts", event_id, stored.type, self.policy.max_attempts
        )
        self.store.set_delivery(event_id, FAILED)

    async def _attempt(self, event: StoredEvent, payload: bytes) -> bool:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Cache-Control": "no-cache",
            "Accept": "*/*; q=0.5, application/xml",
            # signed afresh for every attempt, with the attempt's own timestamp, as Stripe does
            "Stripe-Signature": signature_header(payload, self.secret),
        }
        started = time.time()
        t0 = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            resp = await self.client.post(
                self.url, content=payload, headers=headers, timeout=self.policy.timeout
            )
            status = resp.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = round((time.perf_counter() - t0) * 1000, 2)
        n = self.store.add_attempt(event.id, self.url, started, status, error, duration_ms)
        ok = status is not None and 200 <= status < 300
        log.info(
            "webhook %s %s attempt %d → %s", event.id, event.type, n, status if status is not None else error
        )
        return ok
