"""The in-app push: a row of the owner's notification inbox (GET /v1/me/notifications), written with
the event's record.  The owner's phones get the same message from the device push providers
(adapters/fcm.py, adapters/apns.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from notif_worker.domain import BookingNotice, InboxRow


class InboxPush:
    def inbox_row(self, notice: BookingNotice, title: str, body: str, data: dict[str, str]) -> InboxRow:
        return InboxRow(
            uuid.uuid4(), notice.owner_user_id, notice.event_id, title, body, data, datetime.now(UTC)
        )
