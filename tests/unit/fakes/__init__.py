"""Hand-written fakes of the services' ports (cosmicpython style): in-memory repositories with the
same contract as the SQL ones (including the races the schema decides), and a unit of work that
commits on success and rolls the store back on an exception."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from petpro.db import one_connection

S = TypeVar("S")
R = TypeVar("R")


class FakeUnitOfWork(Generic[S, R]):
    """``async with uow() as repo``: a transaction over ``store``.  Counts commits and rollbacks."""

    def __init__(self, store: S, repo: Callable[[S], R]) -> None:
        self.store = store
        self.repo = repo
        self.commits = 0
        self.rollbacks = 0
        # called after each commit with the store's state before the transaction and the store
        self.on_commit: list[Callable[[dict[str, Any], S], None]] = []

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[R]:
        snapshot = copy.deepcopy(vars(self.store))
        repo = self.repo(self.store)
        try:
            with one_connection("fake"):  # one pooled connection per task, as petpro.db.Database
                yield repo
        except BaseException:
            vars(self.store).clear()
            vars(self.store).update(snapshot)
            self.rollbacks += 1
            raise
        else:
            self.commits += 1
            for hook in self.on_commit:
                hook(snapshot, self.store)
        finally:
            release = getattr(repo, "release", None)
            if release is not None:  # the row locks it took end with the transaction
                release()
