"""Every service has the same rooms (docs/architecture.md): a newcomer who knows one service knows
where everything is in the others.  Checked on the file tree of each service in the mesh manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from petpro.mesh import MESH

ROOT = Path(__file__).resolve().parents[2]
SERVICES = tuple(s.package for s in MESH.migrated)  # the services that own data: the four of the mesh

# module or package: both shapes hold the same room (a package once the module grows)
ROOMS_MODULE_OR_PACKAGE = ("domain", "service")
ROOMS_MODULE = ("__init__", "__main__", "server", "ports")
ROOMS_PACKAGE = ("handlers", "adapters", "migrations")
# command-line entry points that live beside the rooms, by name, with their reason
ENTRY_POINTS = {
    "seed": "python -m <svc>.seed FILE: the service's part of `petpro seed`",
    "admin": "python -m auth_svc.admin: platform admin accounts (auth only)",
    "signing_keys": "python -m auth_svc.signing_keys: key rotation (auth only)",
}


def top_level(base: Path) -> set[str]:
    """The modules and packages directly in ``base``."""
    names = set()
    for p in base.iterdir():
        if p.name == "__pycache__":
            continue
        if p.is_dir() and (p / "__init__.py").exists():
            names.add(p.name)
        elif p.suffix == ".py":
            names.add(p.stem)
    return names


@pytest.mark.parametrize("svc", SERVICES)
def test_every_room_is_there(svc: str) -> None:
    base = ROOT / svc
    for name in ROOMS_MODULE:
        assert (base / f"{name}.py").is_file(), f"{svc}/{name}.py"
    for name in ROOMS_PACKAGE:
        assert (base / name / "__init__.py").is_file(), f"{svc}/{name}/ (a package)"
    for name in ROOMS_MODULE_OR_PACKAGE:
        assert (base / f"{name}.py").is_file() != (base / name / "__init__.py").is_file(), (
            f"{svc}/{name}: a module or a package, exactly one"
        )
    assert (base / "adapters" / "tables.py").is_file(), f"{svc}/adapters/tables.py (metadata for migrations)"
    assert (base / "adapters" / "repository.py").is_file() or (base / "adapters" / "repository").is_dir()


@pytest.mark.parametrize("svc", SERVICES)
def test_nothing_lives_outside_the_rooms(svc: str) -> None:
    known = {*ROOMS_MODULE, *ROOMS_PACKAGE, *ROOMS_MODULE_OR_PACKAGE, *ENTRY_POINTS}
    assert top_level(ROOT / svc) - known == set()


def test_the_check_sees_a_stray_module_and_a_missing_room(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "__init__.py").write_text("")
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "notes").mkdir()  # a folder that is no package is no room
    assert top_level(tmp_path) == {"handlers", "helpers"}
