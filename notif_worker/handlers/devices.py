"""Pushing a message to an owner's devices through the provider of each device's platform (FCM,
APNs), each send retried with back-off on a transient failure; a device whose token the provider
reports gone is removed.  Also the per-channel retry every delivery uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from notif_worker.domain import ChannelFailed, Device, DeviceGone, MessageRefused
from notif_worker.ports import DevicePush

log = logging.getLogger("notif_worker")
T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 3.0

    def delay(self, attempt: int) -> float:
        return float(min(self.base_delay * 2**attempt, self.max_delay))

    async def run(self, channel: str, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` until it succeeds; ChannelFailed after the last attempt, or at once when the channel
        refused the message for good (MessageRefused).  DeviceGone is not a failure to retry: it
        passes through."""
        for attempt in range(self.attempts):
            try:
                return await step()
            except DeviceGone:
                raise
            except Exception as exc:
                if attempt + 1 == self.attempts or isinstance(exc, MessageRefused):
                    raise ChannelFailed(channel, f"{type(exc).__name__}: {exc}") from exc
                log.warning("%s delivery failed (attempt %d): %s", channel, attempt + 1, exc)
                await asyncio.sleep(self.delay(attempt))
        raise AssertionError("unreachable")


DEFAULT_RETRY = Retry()

# what becomes of one device's push: "sent", or "gone" (the device was removed)
Outcome = str


class DevicePushes:
    """The push providers by platform (a platform without one is skipped: no credentials for it)."""

    def __init__(self, providers: Iterable[DevicePush], retry: Retry = Retry()) -> None:
        self.by_platform = {p: provider for provider in providers for p in provider.platforms}
        self.retry = retry

    def serves(self, device: Device) -> bool:
        return device.platform in self.by_platform

    async def send(self, device: Device, title: str, body: str, data: dict[str, str]) -> Outcome:
        """Sends to one device with retries; "gone" when its token is no longer valid (the caller
        removes it).  Raises ChannelFailed when the retries are exhausted or the message is refused."""
        provider = self.by_platform[device.platform]
        try:
            await self.retry.run(
                f"push.{device.platform.lower()}", lambda: provider.send(device, title, body, data)
            )
        except DeviceGone:
            log.info(
                "device token gone: removing the device", extra={"fields": {"device_id": str(device.id)}}
            )
            return "gone"
        return "sent"
