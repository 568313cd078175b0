"""notif's schema as SQLAlchemy tables: deliveries (once per event, channel, recipient), the clinic
feed and its per-clinic cursors, the per-booking progress and parked events, reminders, preferences,
the inbox and devices, the owners' bookings (their calendar feed) and feed tokens, the clinics' quiet
hours, with the indexes and constraints the migrations create (migrations' env.py and the
schema-drift test read ``metadata`` from here)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
    true,
)

SCHEMA = "notif"
metadata = MetaData(schema=SCHEMA)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Column("claimed_at", DateTime(timezone=True)),  # SMS: when its send was last claimed
    Column("body", Text),  # SMS: the text, for the sweep of texts whose worker stopped while sending
    UniqueConstraint("event_id", "channel", "recipient", name="deliveries_once"),
    Index("ix_deliveries_sms_recipient", "recipient", "created_at", postgresql_where=text("channel = 'sms'")),
)
# Per-clinic cursors: allocated under a row lock on clinic_cursors, so within a clinic the commit order
# equals the cursor order and a subscriber can never skip an uncommitted cursor.
clinic_cursors = Table(
    "clinic_cursors",
    metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("last_cursor", BigInteger, nullable=False),
)
clinic_events = Table(
    "clinic_events",
    metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("cursor", BigInteger, primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
booking_progress = Table(
    "booking_progress",
    metadata,
    Column("booking_id", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
parked_events = Table(
    "parked_events",
    metadata,
    Column("booking_id", String(64), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
reminders = Table(
    "reminders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("booking_id", String(64), nullable=False),
    Column("offset_minutes", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("slot_start", DateTime(timezone=True), nullable=False),
    Column("slot_end", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("booking_id", "offset_minutes", name="one_reminder_per_offset"),
    CheckConstraint("state IN ('PENDING','SENT','DROPPED')", name="reminder_state_known"),
    Index("ix_reminders_due", "due_at", postgresql_where=text("state = 'PENDING'")),
)
preferences = Table(
    "preferences",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("reminders_email", Boolean, nullable=False, server_default=true()),
    Column("reminders_push", Boolean, nullable=False, server_default=true()),
    Column("changes_email", Boolean, nullable=False, server_default=true()),
    Column("changes_push", Boolean, nullable=False, server_default=true()),
    Column("reminders_sms", Boolean, nullable=False, server_default=true()),
    Column("changes_sms", Boolean, nullable=False, server_default=true()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
PREFERENCE_FIELDS = (
    "reminders_email",
    "reminders_push",
    "changes_email",
    "changes_push",
    "reminders_sms",
    "changes_sms",
)
inbox = Table(
    "inbox",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("read_at", DateTime(timezone=True)),
    UniqueConstraint("user_id", "event_id", name="inbox_once"),
    Index("ix_inbox_user_created", "user_id", "created_at"),
)
devices = Table(
    "devices",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("platform", String(16), nullable=False),
    Column("token", String(4096), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("user_id", "token", name="devices_once"),
)
# what an owner's calendar feed lists: every booking as its last applied event left it
owner_bookings = Table(
    "owner_bookings",
    metadata,
    Column("booking_id", String(64), primary_key=True),
    Column("owner_user_id", Uuid, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("slot_start", DateTime(timezone=True), nullable=False),
    Column("slot_end", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
calendar_tokens = Table(
    "calendar_tokens",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
clinic_quiet_hours = Table(
    "clinic_quiet_hours",
    metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("starts", String(5), nullable=False),
    Column("ends", String(5), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# an owner's number for texts (E.164): PENDING with a code's hash until confirmed, VERIFIED, OPTED_OUT
sms_phones = Table(
    "sms_phones",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("phone", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("code_hash", LargeBinary, nullable=False, server_default=text("''::bytea")),
    Column("code_expires_at", DateTime(timezone=True)),
    Column("tries_left", Integer, nullable=False, server_default="0"),
    Column("codes_sent", Integer, nullable=False, server_default="0"),
    Column("window_start", DateTime(timezone=True)),
    Column("verified_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("state IN ('PENDING','VERIFIED','OPTED_OUT')", name="sms_phone_state_known"),
    Index("ix_sms_phones_phone", "phone"),
)
clinic_sms = Table(
    "clinic_sms",
    metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default=false()),
    Column("monthly_cap", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# texts counted per clinic and calendar month (UTC, "2026-12") against its cap
sms_usage = Table(
    "sms_usage",
    metadata,
    Column("clinic_id", Uuid, primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("sent", Integer, nullable=False),
)
# deleted accounts whose data notif erased (account.deleted, exactly once by event id); a booking event
# about one arriving later is erased again after it is applied (its owner's last notice)
erased_accounts = Table(
    "erased_accounts",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("email_sha256", ARRAY(String(64)), nullable=False),
    Column("erased_at", DateTime(timezone=True)),  # NULL: the erasure is under way
)

Index("ix_owner_bookings_owner_end", owner_bookings.c.owner_user_id, owner_bookings.c.slot_end)
Index("ix_devices_token", devices.c.token)
Index("ix_devices_user", devices.c.user_id)
