"""Schema drift: for each service of the mesh manifest that owns a schema, ``alembic upgrade head``
(petpro.migrations, as ``petpro migrate`` and the Helm hook run it) on a fresh database of the
embedded PostgreSQL gives exactly the tables of the service's SQLAlchemy ``metadata``: alembic's
autogenerate comparison finds nothing to add, drop or alter (tables, columns, types, nullability,
indexes, unique constraints, foreign keys)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from petpro.db import sqlalchemy_url
from petpro.mesh import MESH, Service
from petpro.migrations import migrate, target_metadata
from petpro_dev.devstack import Stack

pytestmark = pytest.mark.integration


def service_metadata(service: Service) -> MetaData:
    """The metadata the manifest names (``Service.tables``, ``<pkg>.adapters.tables``)."""
    return target_metadata(service.package)


@pytest.fixture
def fresh_database(devstack: Stack) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL (dropped afterwards)."""
    url = devstack.env()["DATABASE_URL"]
    name = f"drift_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def describe(item: tuple[Any, ...]) -> str:
    """One entry of alembic's diff as ``<kind> <table> <name or (columns)>``."""
    kind = item[0]
    if kind in ("add_column", "remove_column"):
        return f"{kind} {item[2]}.{item[3].name}"
    if kind.startswith("modify_"):
        return f"{kind} {item[2]}.{item[3]}"
    obj = item[1]
    if kind.endswith("_table"):
        return f"{kind} {obj.name}"
    columns = getattr(obj, "column_keys", None) or [c.name for c in obj.columns]
    return f"{kind} {obj.table.name} {obj.name or '(' + ', '.join(columns) + ')'}"


def drift(url: str, schema: str, metadata: MetaData) -> list[str]:
    """Alembic's diff between the database's ``schema`` and ``metadata``, described (empty: no drift)."""

    def include_name(name: str | None, type_: str, parent: dict[str, str | None]) -> bool:
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return name != "alembic_version"
        return True

    engine = create_engine(sqlalchemy_url(url))  # no search_path: the schema is named, never the default
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "target_metadata": metadata,
                    "include_schemas": True,
                    "include_name": include_name,
                    "compare_type": True,
                },
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    # a column's modifications come as a list of entries, everything else as one
    return [describe(entry) for d in diff for entry in (d if isinstance(d, list) else [d])]


@pytest.mark.parametrize("service", MESH.migrated, ids=lambda s: s.name)
def test_migrations_build_exactly_the_tables_of_the_metadata(service: Service, fresh_database: str) -> None:
    assert service.schema is not None
    metadata = service_metadata(service)
    assert metadata.schema == service.schema, "the metadata's schema is the one the manifest declares"
    assert metadata.tables, f"{service.tables}: no tables"

    migrate(service.package, fresh_database)

    assert drift(fresh_database, service.schema, metadata) == [], "the migrations and the metadata disagree"


def test_the_comparison_sees_drift(fresh_database: str) -> None:
    """A column the migrations never created, and a table they created that the metadata lacks."""
    from sqlalchemy import Column, Integer, Table

    service = MESH.migrated[0]
    assert service.schema is not None
    migrate(service.package, fresh_database)
    drifted = MetaData(schema=service.schema)
    tables = service_metadata(service).sorted_tables
    for table in tables[:-1]:  # the last one: no other table refers to it
        table.to_metadata(drifted)
    Table(tables[0].name, drifted, Column("not_migrated", Integer), extend_existing=True)

    found = set(drift(fresh_database, service.schema, drifted))
    assert {f"add_column {tables[0].name}.not_migrated", f"remove_table {tables[-1].name}"} <= found
