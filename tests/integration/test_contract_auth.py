"""The AuthRepository contract against the PostgreSQL adapter, on the dev stack's embedded PostgreSQL
migrated to head (auth_svc's migrations)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from auth_svc.adapters.repository import AuthRepository
from auth_svc.adapters.tables import SCHEMA
from auth_svc.ports import UnitOfWork
from petpro.db import Database
from petpro.migrations import migrate
from petpro_dev.devstack import Stack
from tests.conftest import database_of_its_own
from tests.contracts.auth_repository import AuthRepositoryContract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database_url(devstack: Stack) -> Iterator[str]:
    with database_of_its_own(devstack.env()["DATABASE_URL"], "contract_auth") as url:
        migrate("auth_svc", url)
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, SCHEMA, app_name="test-contract-auth", pool_size=2)
    yield db
    await db.close()


class TestPostgresAuthRepository(AuthRepositoryContract):
    @pytest.fixture
    def uow(self, db: Database) -> UnitOfWork:
        return db.repositories(AuthRepository)[0]
