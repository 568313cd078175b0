"""notif_worker's use cases: notifying a booking event, reminders, the clinic feed, the owner's inbox
and preferences."""

from notif_worker.handlers.feed import ClinicFeed
from notif_worker.handlers.inbox import InboxHandlers
from notif_worker.handlers.notify import NotifyHandlers, Retry
from notif_worker.handlers.preferences import PreferenceHandlers
from notif_worker.handlers.reminders import ReminderHandlers, reminder_change

__all__ = [
    "ClinicFeed",
    "InboxHandlers",
    "NotifyHandlers",
    "PreferenceHandlers",
    "ReminderHandlers",
    "Retry",
    "reminder_change",
]
