"""payment's repository contract against the SQL adapter on the embedded PostgreSQL (migrated to head;
rows told apart by unique ids and the suite's own moments, nothing truncated), on a database of its own:
the running mesh's payment_svc reconciles every due payment of its schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from payment_svc.adapters.repository import PaymentRepository
from payment_svc.adapters.tables import SCHEMA
from payment_svc.ports import UnitOfWork
from petpro.db import Database
from petpro.migrations import migrate
from petpro_dev.devstack import Stack
from tests.conftest import database_of_its_own
from tests.contracts.payment_repository import PaymentRepositoryContract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def database(devstack: Stack) -> AsyncIterator[Database]:
    with database_of_its_own(devstack.env()["DATABASE_URL"], "contract_payment") as url:
        await asyncio.to_thread(migrate, "payment_svc", url)
        db = Database(url, SCHEMA, app_name="contract-payment", pool_size=4)
        yield db
        await db.close()


class TestPostgresPaymentRepository(PaymentRepositoryContract):
    @pytest.fixture
    def uow(self, database: Database) -> UnitOfWork:
        uow, _ = database.repositories(PaymentRepository)
        return uow
