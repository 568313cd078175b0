"""notif schema."""

from __future__ import annotations

from sqlalchemy import MetaData

SCHEMA = "notif"
metadata = MetaData(schema=SCHEMA)
