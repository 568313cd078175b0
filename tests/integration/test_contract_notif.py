"""The NotifRepository contract against the PostgreSQL adapter, on the dev stack's embedded PostgreSQL
migrated to head (notif_worker's migrations)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from notif_worker.adapters.repository import NotifRepository
from notif_worker.adapters.tables import SCHEMA
from notif_worker.ports import UnitOfWork
from petpro.db import Database
from petpro.migrations import migrate
from petpro_dev.devstack import Stack
from tests.conftest import database_of_its_own
from tests.contracts.notif_repository import NotifRepositoryContract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database_url(devstack: Stack) -> Iterator[str]:
    with database_of_its_own(devstack.env()["DATABASE_URL"], "contract_notif") as url:
        migrate("notif_worker", url)
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, SCHEMA, app_name="test-contract-notif", pool_size=2)
    yield db
    await db.close()


class TestPostgresNotifRepository(NotifRepositoryContract):
    @pytest.fixture
    def uow(self, db: Database) -> UnitOfWork:
        return db.repositories(NotifRepository)[0]

    @pytest.fixture
    def read(self, db: Database) -> UnitOfWork:
        return db.repositories(NotifRepository)[1]
