"""The mesh manifest (petpro/mesh.py) against the code, and what declaring a service there does.

1. The manifest is consistent (its own checks, which catch what they should) and true to the code:
   every package exists with its entry point and its settings' prefix, every gRPC name is in gen/'s
   descriptor set and every service there is served once, the gateway routes what the edge
   transcodes, the edge calls what it dials, the dev stack's backing components are the manifest's,
   the generated lists are fresh.
2. On a copy of the repository, a fake service ``foo`` is declared in the manifest and given a
   package; the generators run there.  The port map, the migrations, the topics, the dev stack, the
   chart's files/mesh.json and rendered manifests, pyproject's import contracts and the image files
   follow, nothing else changes, and the repository's own checks pass on the copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pb2

from petpro.mesh import MESH, Consumer, Service, Topic
from petpro.settings import PORT_OFFSETS
from tests.conftest import EXTRA_OFFSETS, PORT_SPAN

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTORS = ROOT / "gen" / "petpro_api" / "petpro.binpb"


# ------------------------------------------------------------------------------ the manifest itself


def test_ports_are_unique_and_fit_a_test_stack() -> None:
    assert len(set(PORT_OFFSETS.values())) == len(PORT_OFFSETS)
    assert all(0 < off < PORT_SPAN for off in PORT_OFFSETS.values())
    assert not set(PORT_OFFSETS.values()) & set(EXTRA_OFFSETS)  # the tests' dummy service's
    for s in MESH.services:
        assert {s.name, f"{s.name}_metrics"} <= set(PORT_OFFSETS)


def test_the_manifest_names_its_own_mistakes() -> None:
    auth = MESH.service("auth")
    orphan = Topic("foo.orphan", key="id")
    broken = (
        dataclasses.replace(auth, name="auth2", package="auth2", env_prefix="AUTH_", schema="auth2"),
        dataclasses.replace(
            MESH.service("payment"),
            name="pay2",
            package="pay2",
            env_prefix="PAY2_",
            grpc_offset=40,
            metrics_offset=140,
            schema=None,
            tables=None,
            serves=(),
            calls=("petpro.nope.v1.NopeService",),
            consumes=(Consumer("g", (orphan,), dead_letters=orphan),),
            needs=("mongodb",),
            starts_after=("nobody",),
        ),
    )
    with pytest.raises(ValueError) as err:
        dataclasses.replace(MESH, services=(*MESH.services, *broken))
    message = str(err.value)
    for expected in (
        "env prefix 'AUTH_' is used twice",
        "port offset 1 is used by auth, auth2",
        "gRPC service petpro.auth.v1.AuthService is served twice",
        "service pay2 calls petpro.nope.v1.NopeService, which no component serves",
        "service pay2 consumes foo.orphan, which no service produces",
        "dead-letters to a topic it does not consume or without a DLQ",
        "service pay2 needs 'mongodb', not a backing service",
        "service pay2 starts after 'nobody', not a service",
    ):
        assert expected in message, message


def test_every_consumed_topic_is_produced_and_every_dlq_is_created() -> None:
    produced = {t.name for t in MESH.topics}
    for s in MESH.services:
        for consumer in s.consumes:
            assert {t.name for t in consumer.topics} <= produced, s.name
            if consumer.dead_letters is not None:
                assert consumer.dead_letters.dlq in MESH.topic_names()
    names = MESH.topic_names()
    assert names[names.index("booking.created") + 1] == "booking.created.dlq"
    assert "account.deleted.dlq" not in names  # the erasure subscribers retry, they dead-letter nothing


def test_every_package_exists_and_every_deployable_is_declared() -> None:
    deployables = {
        p.name for p in ROOT.iterdir() if (p / "__main__.py").is_file() and (p / "server.py").is_file()
    }
    assert deployables == {s.package for s in MESH.services}
    for s in MESH.migrated:
        assert (ROOT / s.package / "migrations" / "env.py").is_file(), s.package


@pytest.mark.parametrize("service", MESH.services, ids=lambda s: s.name)
def test_the_settings_class_has_the_manifests_name_and_prefix(service: Service) -> None:
    import importlib

    from petpro.settings import ServiceSettings

    module = importlib.import_module(f"{service.package}.server")
    (settings,) = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v.__module__ == module.__name__
    ]
    assert settings.component == service.name
    assert settings.model_config.get("env_prefix") == service.env_prefix


def _descriptor_services() -> set[str]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    return {f"{f.package}.{s.name}" for f in fds.file if f.package.startswith("petpro.") for s in f.service}


def test_every_grpc_name_is_in_the_descriptor_set_and_every_service_is_served_once() -> None:
    known = _descriptor_services()
    named = {g for s in MESH.services for g in (*s.serves, *s.calls)} | set(MESH.gateway.routes)
    assert named - known == set(), "not in gen/petpro_api/petpro.binpb"
    served = [g for s in MESH.services for g in s.serves]
    assert sorted(served) == sorted(known), "every gRPC service of the contracts has one server"


def test_the_gateway_routes_what_the_edge_transcodes() -> None:
    from edge.gateway.routes import TRANSCODED_SERVICES

    assert set(MESH.gateway.routes) == set(TRANSCODED_SERVICES)


def test_the_edge_dials_what_it_is_declared_to_call() -> None:
    from edge.server import PEERS

    assert {g for services in PEERS.values() for g in services} == set(MESH.service("edge").calls)
    assert all(MESH.server_of(g).name == peer for peer, services in PEERS.items() for g in services)


def test_notif_consumes_the_manifests_group() -> None:
    from notif_worker.server import NotifSettings

    consumer, erasure = MESH.service("notif").consumes
    assert [t.name for t in erasure.topics] == ["account.deleted"] and erasure.group == "notif-account"
    fields = {k: f.default for k, f in NotifSettings.model_fields.items()}
    assert consumer.dead_letters is not None
    assert (fields["topic"], *fields["change_topics"]) == tuple(t.name for t in consumer.topics)
    assert (fields["dlq_topic"], fields["consumer_group"]) == (consumer.dead_letters.dlq, consumer.group)


def test_the_dev_stack_backing_components_are_the_manifests() -> None:
    from petpro_dev.devstack import infra

    assert [(c.name, c.url_key) for c in infra()] == [(b.name, b.url_key) for b in MESH.backing]


def test_chart_values_name_only_manifest_services() -> None:
    values = yaml.safe_load((ROOT / "k8s" / "helm" / "petpro" / "values.yaml").read_text())
    assert set(values["services"]) <= {s.name for s in MESH.services}


def test_the_generated_package_lists_are_fresh() -> None:
    from petpro_dev import meshgen

    assert meshgen.stale() == [], "run `make gen` (python -m petpro_dev.meshgen) and commit"


# ------------------------------------------------------------------ declaring a service: foo, on a copy

FOO_TOPIC = (
    'FOO_HAPPENED = Topic("foo.happened", key="foo_id", dead_letters=True, retention_ms=604_800_000)\n'
)
FOO_SERVICE = """\
        Service(
            name="foo",
            package="foo_svc",
            env_prefix="FOO_",
            grpc_offset=6,
            metrics_offset=106,
            schema="foo",
            tables="foo_svc.adapters.tables",
            calls=("petpro.auth.v1.AuthService",),
            produces=(FOO_HAPPENED,),
            consumes=(Consumer("foo-worker", (BOOKING_CREATED,)),),
            needs=("postgres", "kafka"),
            starts_after=("auth",),
        ),
"""
# the fake package: what a developer writes by hand besides the manifest entry
FOO_PACKAGE = {
    "foo_svc/__init__.py": '"""foo_svc: the fake service of tests/unit/test_mesh_manifest.py."""\n',
    "foo_svc/__main__.py": "from foo_svc.server import main\n\nmain()\n",
    "foo_svc/server.py": (
        "from pydantic_settings import SettingsConfigDict\n\n"
        "from petpro.settings import ServiceSettings\n\n\n"
        "class FooSettings(ServiceSettings):\n"
        '    component = "foo"\n'
        '    model_config = SettingsConfigDict(env_prefix="FOO_", env_file=".env", extra="ignore")\n\n\n'
        "def main() -> None:\n"
        "    raise SystemExit(0)\n"
    ),
    "foo_svc/adapters/__init__.py": "",
    "foo_svc/adapters/tables.py": (
        "from sqlalchemy import Column, MetaData, Table, Text\n\n"
        'SCHEMA = "foo"\n'
        "metadata = MetaData(schema=SCHEMA)\n"
        'things = Table("things", metadata, Column("id", Text, primary_key=True))\n'
    ),
    "foo_svc/migrations/__init__.py": "",
    "foo_svc/migrations/env.py": (
        "from foo_svc.adapters.tables import metadata\nfrom petpro.migrations import run_env\n\nrun_env(metadata)\n"
    ),
    "foo_svc/migrations/versions/0001_things.py": (
        'revision = "0001_things"\ndown_revision = None\n\n\ndef upgrade() -> None:\n    pass\n'
    ),
}
# a module of foo's that breaks two import rules: the check must name it
FOO_VIOLATION = ("foo_svc/_violation.py", "import booking_svc.domain\nimport petpro_dev.meshgen\n")

COPIED = ["petpro", "petpro_dev", "auth_svc", "booking_svc", "payment_svc", "notif_worker", "edge", "k8s"]
COPIED_FILES = ["pyproject.toml", "Dockerfile", ".dockerignore", "tests/__init__.py", "tests/conftest.py"]
COPIED_TESTS = [
    "tests/unit/__init__.py",
    "tests/unit/test_mesh_manifest.py",
    "tests/unit/test_import_rules.py",
]
COPIED_TESTS += ["tests/unit/test_migration_heads.py"]


def _snapshot(tree: Path) -> dict[str, str]:
    return {
        str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and p.parts[len(tree.parts)] != "gen" and "__pycache__" not in p.parts
    }


def _run(tree: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'gen'}", "PYTHONDONTWRITEBYTECODE": "1"}
    env = {k: v for k, v in env.items() if not k.startswith(("PETPRO_", "FOO_"))}
    result = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=240, check=False)
    if check:
        assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


DERIVED = """
import json, sys
from pathlib import Path
from petpro.settings import PORT_OFFSETS, BackingSettings, StackSettings
from petpro.migrations import MIGRATED
from petpro.topics import TopicSettings
from petpro_dev.devstack import services
from petpro_dev.devstack.component import Component, Context
ctx = Context(StackSettings(home=Path(sys.argv[1])), BackingSettings())
steps = {
    s.name: {"depends_on": list(s.depends_on), "argv": list(s.launch(ctx).argv)[1:]}
    for s in services() if isinstance(s, Component)
}
print(json.dumps({"ports": PORT_OFFSETS, "migrated": MIGRATED, "topics": list(TopicSettings().topics),
                  "steps": steps}))
"""


@pytest.fixture(scope="module")
def foo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the repository with ``foo`` declared and its package written, after the generators
    ran there: the files that changed, what the kit derives, the import check's verdict."""
    tree = tmp_path_factory.mktemp("mesh-foo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in [*COPIED_FILES, *COPIED_TESTS]:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    (tree / "gen").symlink_to(ROOT / "gen")  # read only
    before = _snapshot(tree)

    # the hand edits: one manifest entry (and its topic), the package
    manifest = tree / "petpro" / "mesh.py"
    text = manifest.read_text()
    assert text.count("\nMESH = Mesh(\n") == 1 and text.count("\n    ),\n    backing=(\n") == 1
    text = text.replace("\nMESH = Mesh(\n", f"\n{FOO_TOPIC}\nMESH = Mesh(\n")
    text = text.replace("\n    ),\n    backing=(\n", f"\n{FOO_SERVICE}    ),\n    backing=(\n")
    manifest.write_text(text)
    for path, source in FOO_PACKAGE.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(source)
    hand = _snapshot(tree)

    # the generators
    _run(tree, sys.executable, "-m", "petpro_dev.meshgen")
    _run(tree, sys.executable, "k8s/render.py")
    after = _snapshot(tree)

    derived = json.loads(_run(tree, sys.executable, "-c", DERIVED, str(tree / "home")).stdout)
    # the repository's own checks of the manifest, the import contracts and the migrations, on the copy
    # (foo's violation is added after them)
    checks = _run(
        tree,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/unit/test_mesh_manifest.py",
        "-k",
        "not foo",
        "tests/unit/test_import_rules.py::test_the_contracts_cover_every_package",
        "tests/unit/test_migration_heads.py",
        "-W",
        "ignore::pytest.PytestConfigWarning",
        check=False,
    )
    (tree / FOO_VIOLATION[0]).write_text(FOO_VIOLATION[1])
    lint = _run(
        tree,
        str(Path(sys.executable).with_name("lint-imports")),
        "--config",
        str(tree / "pyproject.toml"),
        "--no-cache",
        check=False,
    )
    return {
        "tree": tree,
        "hand": sorted(set(hand) - set(before) | {p for p in before if hand.get(p) != before[p]}),
        "generated": sorted(p for p in after if after[p] != hand.get(p)),
        "derived": derived,
        "checks": checks,
        "lint": lint,
    }


def test_foo_gets_its_ports(foo: dict[str, Any]) -> None:
    ports = foo["derived"]["ports"]
    assert (ports["foo"], ports["foo_metrics"]) == (6, 106)
    assert len(set(ports.values())) == len(ports)
    assert {k: v for k, v in ports.items() if not k.startswith("foo")} == PORT_OFFSETS


def test_foo_is_migrated_and_its_topics_are_created(foo: dict[str, Any]) -> None:
    from petpro.migrations import MIGRATED

    assert foo["derived"]["migrated"] == {**MIGRATED, "foo_svc": "foo"}
    assert foo["derived"]["topics"] == [*MESH.topic_names(), "foo.happened", "foo.happened.dlq"]


def test_the_dev_stack_starts_foo_after_what_it_needs(foo: dict[str, Any]) -> None:
    step = foo["derived"]["steps"]["foo"]
    assert step == {"depends_on": ["migrate", "postgres", "kafka", "auth"], "argv": ["-m", "foo_svc"]}
    assert list(foo["derived"]["steps"])[-2:] == ["foo", "envoy"]


def test_the_chart_deploys_foo_and_lets_it_reach_only_its_peers(foo: dict[str, Any]) -> None:
    tree: Path = foo["tree"]
    mesh = json.loads((tree / "k8s/helm/petpro/files/mesh.json").read_text())
    assert mesh["services"][-1] == "foo"
    assert mesh["components"]["foo"] == {
        "module": "foo_svc",
        "prefix": "FOO",
        "grpcPort": 7406,
        "metricsPort": 7506,
        "needs": ["postgres", "kafka"],
        "peers": ["auth"],
        "callers": [],
    }
    assert "foo" in mesh["components"]["auth"]["callers"]
    assert mesh["topicConfigs"] == {"foo.happened": {"retention.ms": "604800000"}}

    objs = [
        o
        for f in ("services.yaml", "networkpolicies.yaml", "hooks.yaml")
        for o in yaml.safe_load_all((tree / "k8s/manifests" / f).read_text())
        if o
    ]
    (dep,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "petpro-foo"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["command"] == ["python", "-m", "foo_svc"]
    assert env["FOO_GRPC_PORT"] == "7406" and env["AUTH_ADDR"] == "dns:///petpro-auth:7401"
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} <= set(env) and "REDIS_URL" not in env
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "320Mi"
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}
    egress_ports = {p["port"] for rule in policies["petpro-foo"]["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 7401, 5432, 9092}
    # nobody calls foo: only Prometheus' namespace reaches it (its metrics port), never every source
    (metrics,) = policies["petpro-foo"]["spec"]["ingress"]
    assert [p["port"] for p in metrics["ports"]] == [7506] and "namespaceSelector" in metrics["from"][0]
    auth_callers = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in policies["petpro-auth"]["spec"]["ingress"][0]["from"]
    }
    assert "foo" in auth_callers
    (job,) = [o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == "petpro-topics"]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["PETPRO_KAFKA_TOPICS"])[-2:] == ["foo.happened", "foo.happened.dlq"]


def test_foo_is_in_the_import_contracts_and_the_image(foo: dict[str, Any]) -> None:
    tree: Path = foo["tree"]
    pyproject = tomllib.loads((tree / "pyproject.toml").read_text())
    linter = pyproject["tool"]["importlinter"]
    assert "foo_svc" in linter["root_packages"]
    contracts = {c["id"]: c for c in linter["contracts"]}
    assert "foo_svc" in contracts["independent"]["modules"]
    assert "foo_svc" in contracts["services"]["source_modules"]
    assert "foo_svc" in contracts["kit"]["forbidden_modules"]
    assert "foo_svc*" in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "foo_svc" in pyproject["tool"]["ruff"]["lint"]["isort"]["known-first-party"]
    dockerfile = (tree / "Dockerfile").read_text()
    assert "COPY foo_svc ./foo_svc\n" in dockerfile and " 7406 " in dockerfile
    assert "!foo_svc/\n" in (tree / ".dockerignore").read_text()
    # lint-imports sees foo_svc: its module that imports another service and the dev tooling is named
    lint = foo["lint"]
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert "Contracts: 3 kept, 2 broken." in lint.stdout
    assert "foo_svc._violation -> booking_svc.domain" in lint.stdout
    assert "foo_svc._violation -> petpro_dev.meshgen" in lint.stdout


def test_foo_needs_no_other_hand_edit(foo: dict[str, Any]) -> None:
    assert foo["hand"] == sorted(["petpro/mesh.py", *FOO_PACKAGE])
    assert foo["generated"] == [
        ".dockerignore",
        "Dockerfile",
        "k8s/helm/petpro/files/mesh.json",
        "k8s/manifests/hooks.yaml",
        "k8s/manifests/networkpolicies.yaml",
        "k8s/manifests/services.yaml",
        "pyproject.toml",
    ]
    checks = foo["checks"]
    assert checks.returncode == 0, checks.stdout + checks.stderr
