"""Alembic, one history per service, each in its own PostgreSQL schema.

``migrate(pkg)`` upgrades one service to head (``<pkg>/migrations``); ``migrate_all()`` does every
service (``petpro migrate``, and ``petpro up`` before starting the services).  A service's
``migrations/env.py`` is two lines: import its metadata and call :func:`run_env`.  Concurrent
migrators (several replicas starting at once) serialise on a PostgreSQL advisory lock.  The services
with a schema, and the module of each one's metadata (:func:`target_metadata`), are the mesh
manifest's (``petpro/mesh.py``).
"""

from __future__ import annotations

import importlib
import logging
import os
import zlib

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text

from petpro.db import make_sync_engine
from petpro.mesh import MESH
from petpro.settings import StackSettings, embedded_urls

log = logging.getLogger("petpro.migrations")

# package → schema it owns, from the mesh manifest (petpro/mesh.py), in its order
MIGRATED: dict[str, str] = {s.package: s.schema for s in MESH.migrated if s.schema}


def target_metadata(pkg: str) -> MetaData:
    """The SQLAlchemy ``metadata`` of a migrated package's schema: ``metadata`` of the module the
    manifest names (``Service.tables``), imported on demand (the schema-drift test compares it with
    ``alembic upgrade head``)."""
    if pkg not in MIGRATED:
        raise KeyError(f"{pkg} owns no schema; migrated: {', '.join(MIGRATED)}")
    module = next(s.tables for s in MESH.migrated if s.package == pkg)
    metadata = getattr(importlib.import_module(str(module)), "metadata", None)
    if not isinstance(metadata, MetaData):
        raise TypeError(f"{module} has no SQLAlchemy `metadata`")
    return metadata


def database_url() -> str:
    """The server to migrate: ``DATABASE_DIRECT_URL`` (the server itself, when ``DATABASE_URL`` is a
    pooler's: the migrations hold an advisory lock for their session), else ``DATABASE_URL``."""
    return (
        os.environ.get("DATABASE_DIRECT_URL")
        or os.environ.get("DATABASE_URL")
        or embedded_urls(StackSettings())["database_url"]
    )


def alembic_config(pkg: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"{pkg}:migrations")
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["url"] = url
    cfg.attributes["schema"] = MIGRATED[pkg]
    return cfg


def migrate(pkg: str, url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(pkg, url or database_url()), revision)


def migrate_all(url: str | None = None) -> list[str]:
    done = []
    for pkg in MIGRATED:
        migrate(pkg, url)
        done.append(pkg)
    return done


# A migration runs while the old release serves (docs/operations.md "Upgrading without loss"): a lock it
# waits for queues every query of the service behind it, so it gives up after LOCK_TIMEOUT (the hook Job
# fails, nothing changed, retry later) instead of stalling the mesh; a statement that runs for
# STATEMENT_TIMEOUT is a migration that needed the expand/backfill/contract treatment.
TIMEOUTS = ("SET lock_timeout = '10s'", "SET statement_timeout = '10min'")


def run_env(metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py``.  Offline (``--sql``) it writes the SQL without
    connecting: the migration linter (petpro_dev.migration_lint) lints that."""
    from alembic import context

    cfg = context.config
    schema: str = cfg.attributes["schema"]
    if context.is_offline_mode():
        context.configure(
            url=cfg.attributes["url"],
            target_metadata=metadata,
            version_table_schema=schema,
            literal_binds=True,
            dialect_name="postgresql",
        )
        with context.begin_transaction():
            for statement in TIMEOUTS:
                context.execute(statement)
            context.run_migrations()
        return
    engine = make_sync_engine(cfg.attributes["url"], schema)
    lock_key = zlib.crc32(f"petpro-migrate-{schema}".encode())
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key})
        try:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.commit()
            context.configure(
                connection=conn,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=False,
                compare_type=True,
            )
            with context.begin_transaction():
                for statement in TIMEOUTS:
                    context.execute(statement)
                context.run_migrations()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
            conn.commit()
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """``python -m petpro.migrations [PKG ...]``: the production entry point (the Helm pre-install /
    pre-upgrade hook Job runs it from the service image).  ``DATABASE_URL`` names the database."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m petpro.migrations", description=main.__doc__)
    parser.add_argument("packages", nargs="*", metavar="PKG", help=f"default: all of {', '.join(MIGRATED)}")
    args = parser.parse_args(argv)
    unknown = [p for p in args.packages if p not in MIGRATED]
    if unknown:
        parser.error(f"unknown package(s) {', '.join(unknown)}; known: {', '.join(MIGRATED)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not (os.environ.get("DATABASE_URL") or os.environ.get("DATABASE_DIRECT_URL")):
        raise SystemExit("DATABASE_URL is required (postgresql://user:password@host:5432/petpro)")
    for pkg in args.packages or MIGRATED:
        migrate(pkg)
        log.info("migrated %s", pkg)


if __name__ == "__main__":
    main()
