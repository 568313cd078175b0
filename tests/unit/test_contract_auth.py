"""The AuthRepository contract against the in-memory fake (tests/unit/fakes/auth.py)."""

from __future__ import annotations

import pytest

from auth_svc.ports import UnitOfWork
from tests.contracts.auth_repository import AuthRepositoryContract
from tests.unit.fakes.auth import auth_uow


class TestFakeAuthRepository(AuthRepositoryContract):
    @pytest.fixture
    def uow(self) -> UnitOfWork:
        return auth_uow()
