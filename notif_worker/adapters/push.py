"""The push provider: a push is a row of the owner's notification inbox (GET /v1/me/notifications),
written with the event's record.  An FCM/APNs provider would implement the same port and also send the
row to the owner's registered devices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from notif_worker.domain import BookingNotice, InboxRow


class InboxPush:
    def inbox_row(self, notice: BookingNotice, title: str, body: str, data: dict[str, str]) -> InboxRow:
        return InboxRow(
            uuid.uuid4(), notice.owner_user_id, notice.event_id, title, body, data, datetime.now(UTC)
        )
