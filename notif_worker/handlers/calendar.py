"""The owner's private calendar feed: its token (made, rotated, revoked by the owner; only its hash
is kept) and the feed itself (their upcoming bookings, read by the token alone)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from notif_worker.domain import FeedToken, locale_of, new_feed_token, token_hash
from notif_worker.ports import CalendarFeedRenderer, UnitOfWork
from petpro.errors import AlreadyExists, NotFound

FEED_LIMIT = 500  # bookings in one feed


class CalendarHandlers:
    def __init__(
        self,
        uow: UnitOfWork,
        read: UnitOfWork,
        render: CalendarFeedRenderer,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_token: Callable[[], str] = new_feed_token,
    ) -> None:
        self.uow = uow
        self.read = read
        self.render = render
        self.clock = clock
        self.new_token = new_token

    async def feed(self, token: str) -> bytes:
        """The iCalendar feed of the token's owner; NotFound for an unknown or revoked token (the same
        answer whatever the token: nothing tells a revoked token from one that never was)."""
        async with self.read() as repo:
            owner = await repo.feed_owner(token_hash(token))
            if owner is None:
                raise NotFound("no calendar feed for this token", reason="CALENDAR_FEED_NOT_FOUND")
            bookings = await repo.upcoming_bookings(owner, self.clock(), FEED_LIMIT)
        locale = locale_of(bookings[0].owner_locale, bookings[0].clinic_locale) if bookings else "en"
        return self.render(bookings, locale)

    async def create_token(self, user_id: uuid.UUID) -> FeedToken:
        token, now = self.new_token(), self.clock()
        async with self.uow() as repo:
            if not await repo.create_feed_token(user_id, token_hash(token), now):
                raise AlreadyExists(
                    "you have a calendar feed token: rotate or revoke it", reason="CALENDAR_FEED_TOKEN_EXISTS"
                )
        return FeedToken(user_id, token, now)

    async def rotate_token(self, user_id: uuid.UUID) -> FeedToken:
        token, now = self.new_token(), self.clock()
        async with self.uow() as repo:
            await repo.replace_feed_token(user_id, token_hash(token), now)
        return FeedToken(user_id, token, now)

    async def revoke_token(self, user_id: uuid.UUID) -> bool:
        async with self.uow() as repo:
            return await repo.revoke_feed_token(user_id)
