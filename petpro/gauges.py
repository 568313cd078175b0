"""Gauges read from the database now and then: what no request path measures (e.g. booking's open
refunds and how long the oldest one has waited), for the alert rules (k8s/helm/petpro/files/alerts.yaml).

``StateAgeGauges`` counts a table's rows per state among ``states`` and the age of the oldest one of
each (``now() - min(since)``), every ``interval`` seconds, on a read-only connection of the
service's own pool; states without rows read 0, so every series exists from the first measurement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from prometheus_client import Gauge
from sqlalchemy import bindparam, text

from petpro.db import Database

log = logging.getLogger("petpro.gauges")


class StateAgeGauges:
    def __init__(
        self,
        db: Database,
        *,
        table: str,
        state: str,
        since: str,
        states: Sequence[str],
        count: Gauge,
        age: Gauge,
        interval: float = 15.0,
    ) -> None:
        for name in (table, state, since):  # identifiers of the service's own code, never user input
            if not name.replace("_", "").isalnum():
                raise ValueError(f"not an identifier: {name!r}")
        self.db, self.states, self.count, self.age, self.interval = db, list(states), count, age, interval
        self.query = text(
            f"SELECT {state} AS state, count(*) AS n,"
            f" COALESCE(EXTRACT(EPOCH FROM now() - min({since})), 0) AS age"
            f" FROM {table} WHERE {state} IN :states GROUP BY {state}"
        ).bindparams(bindparam("states", expanding=True))

    async def measure(self) -> dict[str, tuple[int, float]]:
        """Set the gauges; returns {state: (rows, oldest age in seconds)}."""
        async with self.db.reader() as conn:
            rows = (await conn.execute(self.query, {"states": self.states})).all()
        found = {r.state: (int(r.n), float(r.age)) for r in rows}
        for s in self.states:
            n, age = found.get(s, (0, 0.0))
            self.count.labels(s).set(n)
            self.age.labels(s).set(age)
        return {s: found.get(s, (0, 0.0)) for s in self.states}

    async def run(self) -> None:
        while True:
            try:
                await self.measure()
            except Exception as exc:  # the database is down: the service's own paths report it
                log.warning("gauges not measured: %s", exc)
            await asyncio.sleep(self.interval)


__all__ = ["StateAgeGauges"]
