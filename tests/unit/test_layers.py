"""The layers hold (docs/architecture.md): service.py → handlers.py → ports.py/domain.py ← repository.py.
Checked on the import statements of each service's modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from petpro.mesh import MESH

ROOT = Path(__file__).resolve().parents[2]
SERVICES = tuple(s.package for s in MESH.migrated)  # the services of the mesh manifest that own data
GEN = ("petpro_api", "buf")
IO = (
    "sqlalchemy",
    "psycopg",
    "grpc",
    "google.protobuf",
    "kafka",
    "redis",
    "stripe",
    "aiosmtplib",
    "aiohttp",
    "httpx",
    "petpro.db",
    "petpro.outbox",
    "petpro.events",
    "petpro.grpc_server",
    "petpro.grpc_client",
    "petpro_dev",
)


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def under(module: str, prefix: str) -> bool:
    """``prefix`` is a module (``"grpc"``: grpc and grpc.*) or a package prefix (``"petpro_api."``)."""
    package = prefix.rstrip(".")
    return module == package or module.startswith(package + ".")


def offending(mods: set[str], banned: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(m for m in mods if m not in allowed and any(under(m, b) for b in banned))


def test_the_check_catches_what_it_should() -> None:
    assert offending(
        {"booking_svc.repository", "sqlalchemy.orm", "petpro_api.booking.v1", "petpro.errors"},
        (*IO, *GEN, "booking_svc."),
        allowed=("booking_svc.ports",),
    ) == ["booking_svc.repository", "petpro_api.booking.v1", "sqlalchemy.orm"]
    assert offending({"grpcio_extra", "petpro.dbx"}, IO) == []


def room(svc: str, name: str) -> list[Path]:
    """The modules of a room: ``<svc>/<name>.py`` or every module of the package ``<svc>/<name>/``."""
    module, package = ROOT / svc / f"{name}.py", ROOT / svc / name
    found = [module] if module.exists() else []
    if package.is_dir():
        found += sorted(package.rglob("*.py"))
    return found


def room_imports(svc: str, name: str) -> set[str]:
    paths = room(svc, name)
    assert paths, f"{svc} has no {name} room"
    return set().union(*(imports(p) for p in paths))


def adapters(svc: str) -> list[Path]:
    return room(svc, "adapters") + room(svc, "repository")


@pytest.mark.parametrize("svc", SERVICES)
def test_domain_is_plain_python(svc: str) -> None:
    mods = room_imports(svc, "domain")
    assert [m for m in offending(mods, (*IO, *GEN, f"{svc}.")) if not under(m, f"{svc}.domain")] == []


@pytest.mark.parametrize("svc", SERVICES)
def test_ports_know_only_the_domain(svc: str) -> None:
    mods = room_imports(svc, "ports")
    assert [m for m in offending(mods, (*IO, *GEN, f"{svc}.")) if not under(m, f"{svc}.domain")] == []


@pytest.mark.parametrize("svc", SERVICES)
def test_handlers_depend_on_ports_not_adapters(svc: str) -> None:
    mods = room_imports(svc, "handlers")
    inner = (f"{svc}.domain", f"{svc}.ports", f"{svc}.handlers")
    assert [m for m in offending(mods, (*IO, *GEN, f"{svc}.")) if not any(under(m, i) for i in inner)] == []


@pytest.mark.parametrize("svc", SERVICES)
def test_servicer_talks_to_handlers_never_to_the_repository(svc: str) -> None:
    mods = room_imports(svc, "service")
    assert offending(mods, (f"{svc}.repository", f"{svc}.adapters", "sqlalchemy", "psycopg")) == []


@pytest.mark.parametrize("svc", SERVICES)
def test_adapters_implement_ports_without_reaching_up(svc: str) -> None:
    paths = adapters(svc)
    assert paths, f"{svc} has no adapters"
    for path in paths:
        banned: tuple[str, ...] = (f"{svc}.handlers", f"{svc}.service", f"{svc}.server")
        if "repository" in path.stem or path.parent.name == "repository" or path.stem == "tables":
            banned += ("grpc", *GEN)  # the database adapter speaks SQL, not the wire
        assert offending(imports(path), banned) == [], path
