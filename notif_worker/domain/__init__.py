"""notif_worker's domain: what a booking's lifecycle events tell the owner (email with its calendar
event, push, reminders outside quiet hours, by their preferences, in their language) and the clinic
(its feed).  Pure Python."""

from notif_worker.domain.calendar import (
    FEED_PATH,
    CalendarFeed,
    FeedToken,
    event_uid,
    new_feed_token,
    token_hash,
)
from notif_worker.domain.notices import (
    BookingNotice,
    ChannelFailed,
    Device,
    DeviceGone,
    DeviceRow,
    FeedRow,
    InboxRow,
    MessageRefused,
    PaymentRequest,
    PoisonEvent,
    Preferences,
    Recorded,
    Reminder,
    ReminderChange,
    reminder_due,
)
from notif_worker.domain.quiet import DEFAULT_QUIET_HOURS, QuietHours, reminder_send_time
from notif_worker.domain.wording import MailContent, locale_of, mail_content, money, push_message, when

__all__ = [
    "DEFAULT_QUIET_HOURS",
    "FEED_PATH",
    "BookingNotice",
    "CalendarFeed",
    "ChannelFailed",
    "Device",
    "DeviceGone",
    "DeviceRow",
    "FeedRow",
    "FeedToken",
    "InboxRow",
    "MailContent",
    "MessageRefused",
    "PaymentRequest",
    "PoisonEvent",
    "Preferences",
    "QuietHours",
    "Recorded",
    "Reminder",
    "ReminderChange",
    "event_uid",
    "locale_of",
    "mail_content",
    "money",
    "new_feed_token",
    "push_message",
    "reminder_due",
    "reminder_send_time",
    "token_hash",
    "when",
]
