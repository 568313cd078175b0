"""notif_worker's use cases: notifying a booking event, pushes to devices, reminders, the clinic feed,
the owner's inbox, preferences and calendar feed, the clinics' quiet hours, texts (SMS)."""

from notif_worker.handlers.accounts import AccountErasure
from notif_worker.handlers.calendar import CalendarHandlers
from notif_worker.handlers.devices import DevicePushes, Retry
from notif_worker.handlers.feed import ClinicFeed
from notif_worker.handlers.inbox import InboxHandlers
from notif_worker.handlers.notify import NotifyHandlers
from notif_worker.handlers.payment_requests import PaymentRequestHandlers
from notif_worker.handlers.preferences import PreferenceHandlers
from notif_worker.handlers.quiet_hours import QuietHoursHandlers
from notif_worker.handlers.reminders import ReminderHandlers, reminder_change
from notif_worker.handlers.sms import SmsHandlers

__all__ = [
    "AccountErasure",
    "CalendarHandlers",
    "ClinicFeed",
    "DevicePushes",
    "InboxHandlers",
    "NotifyHandlers",
    "PaymentRequestHandlers",
    "PreferenceHandlers",
    "QuietHoursHandlers",
    "ReminderHandlers",
    "Retry",
    "SmsHandlers",
    "reminder_change",
]
