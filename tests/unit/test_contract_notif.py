"""The NotifRepository contract against the in-memory fake (tests/unit/fakes/notif.py)."""

from __future__ import annotations

import pytest

from notif_worker.ports import UnitOfWork
from tests.contracts.notif_repository import NotifRepositoryContract
from tests.unit.fakes.notif import NotifStore, notif_uow


class TestFakeNotifRepository(NotifRepositoryContract):
    @pytest.fixture
    def store(self) -> NotifStore:
        return NotifStore()

    @pytest.fixture
    def uow(self, store: NotifStore) -> UnitOfWork:
        return notif_uow(store)

    @pytest.fixture
    def read(self, store: NotifStore) -> UnitOfWork:
        return notif_uow(store)
