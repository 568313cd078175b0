"""The sandbox's state: Stripe objects, events with their delivery attempts, idempotency records.

One SQLite file (``<home>/data/stripe/sandbox.sqlite3``) so a restart keeps sessions and resumes
undelivered events; ``path=None`` keeps everything in memory.  Objects are stored as the JSON Stripe
would return (``body``) plus private fields the API never shows (``internal``: line items, payment
intent data).  All calls are synchronous and short; the server runs them on its event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    session_id TEXT,
    created INTEGER NOT NULL,
    body TEXT NOT NULL,
    internal TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS objects_kind ON objects (kind, seq);
CREATE INDEX IF NOT EXISTS objects_session ON objects (session_id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    order_key TEXT,
    created INTEGER NOT NULL,
    body TEXT NOT NULL,
    delivery TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_order_key ON events (order_key, seq);
CREATE TABLE IF NOT EXISTS attempts (
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    url TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms REAL,
    PRIMARY KEY (event_id, attempt)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created REAL NOT NULL
);
"""

# delivery states of an event
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
MUTED = "muted"  # webhooks switched off for the event's session: never delivered
NOT_SUBSCRIBED = "not_subscribed"  # the endpoint's enabled_events leave it out
NO_ENDPOINT = "no_endpoint"  # no webhook URL configured


@dataclass(frozen=True)
class StoredEvent:
    id: str
    type: str
    order_key: str | None
    created: int
    body: str  # the exact payload delivered to the webhook
    delivery: str

    def as_object(self) -> Obj:
        obj: Obj = json.loads(self.body)
        obj["pending_webhooks"] = 1 if self.delivery in (PENDING, FAILED) else 0
        return obj


@dataclass(frozen=True)
class Attempt:
    event_id: str
    attempt: int
    at: float
    url: str
    status_code: int | None
    error: str | None
    duration_ms: float | None

    def as_dict(self) -> Obj:
        return {
            "attempt": self.attempt,
            "at": self.at,
            "url": self.url,
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class IdempotencyRecord:
    key: str
    method: str
    path: str
    fingerprint: str
    status: int
    body: str
    request_id: str
    created: float


class Store:
    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:", isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing for a multi-object change (re-entrant: inner blocks join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- objects -------------------------------------------------------------------------------------

    def put(self, obj: Obj, *, session_id: str | None = None, internal: Obj | None = None) -> None:
        """Insert or replace an object (by id); ``internal`` is kept when not given."""
        body = json.dumps(obj)
        if internal is None:
            self._db.execute(
                "INSERT INTO objects (id, kind, session_id, created, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body, "
                "session_id = COALESCE(excluded.session_id, objects.session_id)",
                (obj["id"], obj["object"], session_id, int(obj.get("created") or time.time()), body),
            )
        else:
            self._db.execute(
                "INSERT INTO objects (id, kind, session_id, created, body, internal) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body, internal = excluded.internal, "
                "session_id = COALESCE(excluded.session_id, objects.session_id)",
                (
                    obj["id"],
                    obj["object"],
                    session_id,
                    int(obj.get("created") or time.time()),
                    body,
                    json.dumps(internal),
                ),
            )

    def get(self, object_id: str, kind: str | None = None) -> Obj | None:
        row = self._db.execute("SELECT kind, body FROM objects WHERE id = ?", (object_id,)).fetchone()
        if row is None or (kind is not None and row["kind"] != kind):
            return None
        obj: Obj = json.loads(row["body"])
        return obj

    def internal(self, object_id: str) -> Obj:
        row = self._db.execute("SELECT internal FROM objects WHERE id = ?", (object_id,)).fetchone()
        data: Obj = json.loads(row["internal"]) if row is not None else {}
        return data

    def session_of(self, object_id: str) -> str | None:
        row = self._db.execute("SELECT session_id FROM objects WHERE id = ?", (object_id,)).fetchone()
        return row["session_id"] if row is not None else None

    def list(
        self,
        kind: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        where: dict[str, str] | None = None,
    ) -> tuple[list[Obj], bool]:
        """Newest first, like Stripe's list endpoints; ``where`` filters on top-level JSON fields."""
        sql = "SELECT body FROM objects WHERE kind = ?"
        args: list[Any] = [kind]
        for field, value in (where or {}).items():
            sql += " AND json_extract(body, ?) = ?"
            args += [f"$.{field}", value]
        order = "DESC"
        if starting_after:
            sql += " AND seq < COALESCE((SELECT seq FROM objects WHERE id = ?), -1)"
            args.append(starting_after)
        elif ending_before:
            sql += " AND seq > COALESCE((SELECT seq FROM objects WHERE id = ?), 1e18)"
            args.append(ending_before)
            order = "ASC"
        sql += f" ORDER BY seq {order} LIMIT ?"
        args.append(limit + 1)
        rows = [json.loads(r["body"]) for r in self._db.execute(sql, args)]
        has_more = len(rows) > limit
        rows = rows[:limit]
        if order == "ASC":
            rows.reverse()
        return rows, has_more

    def open_sessions_due(self, now: int) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM objects WHERE kind = 'checkout.session' "
            "AND json_extract(body, '$.status') = 'open' AND json_extract(body, '$.expires_at') <= ? "
            "ORDER BY seq",
            (now,),
        )
        return [r["id"] for r in rows]

    # -- events --------------------------------------------------------------------------------------

    def add_event(
        self, event_id: str, type_: str, order_key: str | None, created: int, body: str, delivery: str
    ) -> None:
        self._db.execute(
            "INSERT INTO events (id, type, order_key, created, body, delivery) VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, type_, order_key, created, body, delivery),
        )

    def event(self, event_id: str) -> StoredEvent | None:
        row = self._db.execute(
            "SELECT id, type, order_key, created, body, delivery FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        return StoredEvent(**dict(row)) if row is not None else None

    def events(
        self,
        *,
        order_key: str | None = None,
        types: list[str] | None = None,
        limit: int = 100,
        starting_after: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[StoredEvent], bool]:
        sql = "SELECT id, type, order_key, created, body, delivery FROM events WHERE 1 = 1"
        args: list[Any] = []
        if order_key is not None:
            sql += " AND order_key = ?"
            args.append(order_key)
        if types:
            sql += f" AND type IN ({', '.join('?' * len(types))})"
            args += types
        cmp, order = (">", "ASC") if oldest_first else ("<", "DESC")
        if starting_after:
            sql += f" AND seq {cmp} COALESCE((SELECT seq FROM events WHERE id = ?), {'1e18' if oldest_first else '-1'})"
            args.append(starting_after)
        sql += f" ORDER BY seq {order} LIMIT ?"
        args.append(limit + 1)
        rows = [StoredEvent(**dict(r)) for r in self._db.execute(sql, args)]
        return rows[:limit], len(rows) > limit

    def pending_events(self) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT id, type, order_key, created, body, delivery FROM events WHERE delivery = ? ORDER BY seq",
            (PENDING,),
        )
        return [StoredEvent(**dict(r)) for r in rows]

    def set_delivery(self, event_id: str, delivery: str) -> None:
        self._db.execute("UPDATE events SET delivery = ? WHERE id = ?", (delivery, event_id))

    def add_attempt(
        self,
        event_id: str,
        url: str,
        at: float,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
    ) -> int:
        with self.transaction():
            row = self._db.execute(
                "SELECT COALESCE(MAX(attempt), 0) + 1 AS n FROM attempts WHERE event_id = ?", (event_id,)
            ).fetchone()
            n = int(row["n"])
            self._db.execute(
                "INSERT INTO attempts (event_id, attempt, at, url, status_code, error, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, n, at, url, status_code, error, duration_ms),
            )
        return n

    def attempts(self, event_id: str) -> list[Attempt]:
        rows = self._db.execute(
            "SELECT event_id, attempt, at, url, status_code, error, duration_ms FROM attempts "
            "WHERE event_id = ? ORDER BY attempt",
            (event_id,),
        )
        return [Attempt(**dict(r)) for r in rows]

    # -- idempotency ---------------------------------------------------------------------------------

    def idempotency(self, key: str) -> IdempotencyRecord | None:
        row = self._db.execute(
            "SELECT key, method, path, fingerprint, status, body, request_id, created FROM idempotency "
            "WHERE key = ?",
            (key,),
        ).fetchone()
        return IdempotencyRecord(**dict(row)) if row is not None else None

    def save_idempotency(self, record: IdempotencyRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO idempotency (key, method, path, fingerprint, status, body, request_id, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.key,
                record.method,
                record.path,
                record.fingerprint,
                record.status,
                record.body,
                record.request_id,
                record.created,
            ),
        )

    def prune_idempotency(self, older_than: float) -> None:
        self._db.execute("DELETE FROM idempotency WHERE created < ?", (older_than,))
