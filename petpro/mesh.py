"""The mesh manifest: every component of PetPro, its ports, schema, gRPC services, peers, topics and
dev-stack needs, declared once.  Plain typed data (frozen dataclasses), no I/O, nothing imported.

What reads it (nothing else spells these lists):

* ``petpro.settings.PORT_OFFSETS`` — the port map (``<name>``, ``<name>_metrics``, ``<name>_http``);
* ``petpro.migrations.MIGRATED`` — package → schema, for every service that owns one;
* ``petpro.topics`` — the topics ``petpro up`` and the Helm hook create (each with its DLQ);
* the services' topic constants (booking's outbox topics, notif_worker's consumed topics and group);
* ``petpro_dev.devstack.components.SERVICES`` — what ``petpro up`` starts, after what;
* ``k8s/render.py`` (``make k8s``) → ``k8s/helm/petpro/files/mesh.json``, the chart's component
  lists (ports, env prefix, backing services, peers and callers for the NetworkPolicies, topics);
* ``petpro_dev.meshgen`` (``make gen``) → the package lists of ``pyproject.toml`` (import-linter,
  setuptools, ruff, mypy), the Dockerfile's ``COPY``/``EXPOSE`` and ``.dockerignore``.

Both generators have a ``--check`` that ``make test`` runs; ``tests/unit/test_mesh_manifest.py`` holds
the manifest to the code (packages, settings prefixes, gRPC names in gen/'s descriptor set) and
shows, on a copy of the repository, that declaring a service here is the only hand edit besides its
own package.  :meth:`Mesh.problems` is checked when the manifest is built: an inconsistent manifest
fails at import, naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    """A Kafka topic.  Events are protobuf with CloudEvents headers, keyed by ``key`` (per-key order)."""

    name: str
    key: str
    dead_letters: bool = False  # a ``<name>.dlq`` topic holds the events its consumers could not process
    retention_ms: int | None = None  # None: the broker's default

    @property
    def dlq(self) -> str:
        if not self.dead_letters:
            raise ValueError(f"topic {self.name} has no dead-letter topic")
        return self.name + DLQ_SUFFIX

    @property
    def event_type(self) -> str:
        """The CloudEvents ``ce_type`` of its events."""
        return f"dev.petpro.{self.name}.v1"

    @property
    def names(self) -> tuple[str, ...]:
        """The topic and its dead-letter topic, if any: what has to exist on the broker."""
        return (self.name, self.dlq) if self.dead_letters else (self.name,)


@dataclass(frozen=True)
class Consumer:
    """A consumer group: the topics it reads, and the topic whose DLQ takes what it cannot process."""

    group: str
    topics: tuple[Topic, ...]
    dead_letters: Topic | None = None


@dataclass(frozen=True)
class Backing:
    """A backing service: embedded by ``petpro up`` (dev stack component ``name``), external in k8s."""

    name: str  # dev stack component, PORT_OFFSETS key, the chart's networkPolicy.egress key
    port_offset: int
    url_key: str  # its BackingSettings field (DATABASE_URL …); set → external, never started


@dataclass(frozen=True)
class Service:
    """A deployable of the mesh: ``python -m <package>``, a gRPC server with health and /metrics."""

    name: str  # component: PORT_OFFSETS key, ``<NAME>_ADDR``, ``app.kubernetes.io/component``
    package: str
    env_prefix: str  # its settings' prefix, e.g. ``BOOKING_``
    grpc_offset: int
    metrics_offset: int
    http_offset: int | None = None  # an HTTP listener besides gRPC (PORT_OFFSETS ``<name>_http``)
    schema: str | None = None  # the PostgreSQL schema it owns (Alembic history in <package>/migrations)
    tables: str | None = None  # module holding the SQLAlchemy ``metadata`` of it: <package>.adapters.tables
    serves: tuple[str, ...] = ()  # gRPC services (proto full names)
    calls: tuple[str, ...] = ()  # gRPC services of other components it calls
    produces: tuple[Topic, ...] = ()  # through its transactional outbox
    consumes: tuple[Consumer, ...] = ()
    needs: tuple[str, ...] = ()  # backing services (Backing.name)
    starts_after: tuple[str, ...] = ()  # services the dev stack starts (healthy) before this one


@dataclass(frozen=True)
class Gateway:
    """The public REST edge (Envoy): transcodes REST to ``routes`` and proxies plain HTTP to the
    service that has an HTTP listener."""

    name: str
    port_offset: int
    admin_offset: int
    pod_port: int  # its listener in the container image / the chart
    routes: tuple[str, ...]  # gRPC services it transcodes to (edge.gateway.routes.TRANSCODED_SERVICES)


@dataclass(frozen=True)
class Mesh:
    services: tuple[Service, ...]
    backing: tuple[Backing, ...]
    gateway: Gateway
    port_base: int = 7400  # the dev stack's default PETPRO_PORT_BASE; the chart's ports are the same
    partitions: int = 6  # default partitions per topic: two, three or six consumer replicas share them
    _index: dict[str, Service] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s.name: s for s in self.services})
        problems = self.problems()
        if problems:
            raise ValueError("inconsistent mesh manifest (petpro/mesh.py):\n  " + "\n  ".join(problems))

    # -- lookups ----------------------------------------------------------------------------------

    def service(self, name: str) -> Service:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no service {name!r} in the mesh; known: {', '.join(self._index)}") from None

    def server_of(self, grpc_service: str) -> Service:
        """The component serving a gRPC service (proto full name)."""
        for s in self.services:
            if grpc_service in s.serves:
                return s
        raise KeyError(f"no component serves {grpc_service}")

    def peers(self, name: str) -> tuple[str, ...]:
        """Components a service calls, in manifest order."""
        wanted = {self.server_of(g).name for g in self.service(name).calls}
        return tuple(s.name for s in self.services if s.name in wanted)

    def gateway_peers(self) -> tuple[str, ...]:
        wanted = {self.server_of(g).name for g in self.gateway.routes}
        return tuple(s.name for s in self.services if s.name in wanted)

    def callers(self, name: str) -> tuple[str, ...]:
        """Components that call a service (the gateway last): whom its NetworkPolicy admits."""
        served = set(self.service(name).serves)
        found = [s.name for s in self.services if served & set(s.calls)]
        if served & set(self.gateway.routes):
            found.append(self.gateway.name)
        return tuple(found)

    @property
    def migrated(self) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.schema)

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Every topic, in the order its producers declare them."""
        seen: dict[str, Topic] = {}
        for s in self.services:
            for t in s.produces:
                seen.setdefault(t.name, t)
        return tuple(seen.values())

    def topic_names(self) -> tuple[str, ...]:
        """Every topic to create on a broker: each topic followed by its DLQ."""
        return tuple(n for t in self.topics for n in t.names)

    def port_offsets(self) -> dict[str, int]:
        """``settings.PORT_OFFSETS``: name → offset from the port base."""
        return dict(self._ports())

    def _ports(self) -> list[tuple[str, int]]:
        ports = [(s.name, s.grpc_offset) for s in self.services]
        ports += [(f"{s.name}_http", s.http_offset) for s in self.services if s.http_offset is not None]
        ports += [(b.name, b.port_offset) for b in self.backing]
        ports += [(self.gateway.name, self.gateway.port_offset)]
        ports += [(f"{self.gateway.name}_admin", self.gateway.admin_offset)]
        ports += [(f"{s.name}_metrics", s.metrics_offset) for s in self.services]
        return ports

    def port(self, name: str) -> int:
        """The default port of a component (``port_base`` + offset): the chart's container ports."""
        return self.port_base + self.port_offsets()[name]

    # -- consistency -------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What is inconsistent inside the manifest (no I/O: the tests check it against the code)."""
        return list(self._problems())

    def _problems(self) -> Iterator[str]:
        ports = self._ports()
        yield from (f"component or port {n!r} is declared twice" for n in _duplicates(n for n, _ in ports))
        yield from (f"package {p!r} is declared twice" for p in _duplicates(s.package for s in self.services))
        yield from (
            f"env prefix {p!r} is used twice" for p in _duplicates(s.env_prefix for s in self.services)
        )
        yield from (f"schema {p!r} is owned twice" for p in _duplicates(s.schema for s in self.migrated))
        by_offset: dict[int, list[str]] = {}
        for name, off in ports:
            by_offset.setdefault(off, []).append(name)
        for off, owners in sorted(by_offset.items()):
            if len(owners) > 1:
                yield f"port offset {off} is used by {', '.join(owners)}"
        for name, off in ports:
            if not 0 < off < 200:
                yield f"port offset of {name} ({off}) is outside 1..199 (tests give each stack 200 ports)"
        served = [g for s in self.services for g in s.serves]
        yield from (f"gRPC service {g} is served twice" for g in _duplicates(served))
        backing = {b.name for b in self.backing}
        services = {s.name for s in self.services}
        produced = {t.name for t in self.topics}
        yield from (f"topic {t} is declared with different settings" for t in self._conflicting_topics())
        yield from (f"topic name {n} is used twice" for n in _duplicates(self.topic_names()))
        for s in self.services:
            where = f"service {s.name}"
            if not s.env_prefix.endswith("_") or s.env_prefix != s.env_prefix.upper():
                yield f"{where}: env prefix {s.env_prefix!r} must be upper case and end with '_'"
            if (s.schema is None) != (s.tables is None):
                yield f"{where}: a schema and its tables module go together"
            yield from (f"{where} calls {g}, which no component serves" for g in s.calls if g not in served)
            yield from (f"{where} calls its own {g}" for g in s.calls if g in s.serves)
            yield from (f"{where} needs {n!r}, not a backing service" for n in s.needs if n not in backing)
            yield from (
                f"{where} starts after {n!r}, not a service" for n in s.starts_after if n not in services
            )
            for c in s.consumes:
                yield from (
                    f"{where} consumes {t.name}, which no service produces"
                    for t in c.topics
                    if t.name not in produced
                )
                if c.dead_letters is not None and (
                    not c.dead_letters.dead_letters or c.dead_letters not in c.topics
                ):
                    yield f"{where}: group {c.group} dead-letters to a topic it does not consume or without a DLQ"
        yield from (
            f"the gateway routes to {g}, which no component serves"
            for g in self.gateway.routes
            if g not in served
        )
        yield from self._start_cycles()

    def _conflicting_topics(self) -> Iterator[str]:
        seen: dict[str, Topic] = {}
        for s in self.services:
            for t in (*s.produces, *(t for c in s.consumes for t in c.topics)):
                if seen.setdefault(t.name, t) != t:
                    yield t.name

    def _start_cycles(self) -> Iterator[str]:
        after = {s.name: s.starts_after for s in self.services}
        for start in after:
            stack, seen = list(after[start]), set()
            while stack:
                n = stack.pop()
                if n == start:
                    yield f"service {start} starts after itself (a cycle in starts_after)"
                    break
                if n not in seen:
                    seen.add(n)
                    stack.extend(after.get(n, ()))


def _duplicates(items: Iterable[object]) -> list[str]:
    seen: set[object] = set()
    dup: list[str] = []
    for item in items:
        if item in seen and str(item) not in dup:
            dup.append(str(item))
        seen.add(item)
    return dup


# --------------------------------------------------------------------------------------------------
# The topics.  booking_svc writes them to its outbox (key: booking id, so per booking in order).
# --------------------------------------------------------------------------------------------------

BOOKING_CREATED = Topic("booking.created", key="booking_id", dead_letters=True)
BOOKING_CANCELLED = Topic("booking.cancelled", key="booking_id")
BOOKING_RESCHEDULED = Topic("booking.rescheduled", key="booking_id")
BOOKING_COMPLETED = Topic("booking.completed", key="booking_id")
BOOKING_NO_SHOW = Topic("booking.no-show", key="booking_id")
# the lifecycle after confirmation (notif_worker reads them in the same group as booking.created)
LIFECYCLE_TOPICS = (BOOKING_CANCELLED, BOOKING_RESCHEDULED, BOOKING_COMPLETED, BOOKING_NO_SHOW)

NOTIF_CONSUMER = Consumer(
    group="notif-worker", topics=(BOOKING_CREATED, *LIFECYCLE_TOPICS), dead_letters=BOOKING_CREATED
)

# auth writes it to its outbox when an account is deleted (key: user id); booking, payment and notif
# each erase what they hold about the account, in a group of their own (petpro.subscriber)
ACCOUNT_DELETED = Topic("account.deleted", key="user_id")
BOOKING_ACCOUNT_CONSUMER = Consumer(group="booking-account", topics=(ACCOUNT_DELETED,))
PAYMENT_ACCOUNT_CONSUMER = Consumer(group="payment-account", topics=(ACCOUNT_DELETED,))
NOTIF_ACCOUNT_CONSUMER = Consumer(group="notif-account", topics=(ACCOUNT_DELETED,))

# --------------------------------------------------------------------------------------------------
# The manifest.  Adding a service: one Service(...) below, then its package (docs/adding-a-service.md).
# --------------------------------------------------------------------------------------------------

MESH = Mesh(
    services=(
        Service(
            name="auth",
            package="auth_svc",
            env_prefix="AUTH_",
            grpc_offset=1,
            metrics_offset=101,
            schema="auth",
            tables="auth_svc.adapters.tables",
            serves=("petpro.auth.v1.AuthService", "petpro.auth.v1.ClinicStaffService"),
            produces=(ACCOUNT_DELETED,),
            needs=("postgres", "redis", "smtp", "kafka"),
        ),
        Service(
            name="booking",
            package="booking_svc",
            env_prefix="BOOKING_",
            grpc_offset=2,
            metrics_offset=102,
            schema="booking",
            tables="booking_svc.adapters.tables",
            serves=("petpro.booking.v1.BookingService", "petpro.booking.v1.ClinicAdminService"),
            calls=("petpro.auth.v1.AuthService", "petpro.payment.v1.PaymentService"),
            produces=(BOOKING_CREATED, *LIFECYCLE_TOPICS),
            consumes=(BOOKING_ACCOUNT_CONSUMER,),
            needs=("postgres", "kafka"),
        ),
        Service(
            name="payment",
            package="payment_svc",
            env_prefix="PAYMENT_",
            grpc_offset=3,
            metrics_offset=103,
            schema="payment",
            tables="payment_svc.adapters.tables",
            serves=("petpro.payment.v1.PaymentService",),
            consumes=(PAYMENT_ACCOUNT_CONSUMER,),
            needs=("postgres", "stripe", "kafka"),
        ),
        Service(
            name="notif",
            package="notif_worker",
            env_prefix="NOTIF_",
            grpc_offset=4,
            metrics_offset=104,
            schema="notif",
            tables="notif_worker.adapters.tables",
            serves=("petpro.notification.v1.ClinicFeedService", "petpro.notification.v1.NotificationService"),
            calls=("petpro.auth.v1.AuthService",),
            consumes=(NOTIF_CONSUMER, NOTIF_ACCOUNT_CONSUMER),
            needs=("postgres", "redis", "kafka", "smtp", "push", "sms"),
        ),
        Service(
            name="edge",
            package="edge",
            env_prefix="EDGE_",
            grpc_offset=5,
            metrics_offset=105,
            http_offset=82,  # webhooks, /openapi.json, /docs, the clinic dashboard: behind Envoy
            serves=("petpro.mobile.v1.MobileService",),
            calls=(
                "petpro.auth.v1.AuthService",
                "petpro.booking.v1.BookingService",
                "petpro.payment.v1.PaymentService",
                "petpro.notification.v1.NotificationService",
                "petpro.notification.v1.ClinicFeedService",
            ),
            starts_after=("auth", "booking", "payment"),
        ),
    ),
    backing=(
        Backing("postgres", port_offset=32, url_key="database_url"),
        Backing("redis", port_offset=79, url_key="redis_url"),
        Backing("kafka", port_offset=92, url_key="kafka_bootstrap_servers"),
        Backing("smtp", port_offset=25, url_key="smtp_url"),
        Backing("stripe", port_offset=11, url_key="stripe_api_base"),  # the Stripe-compatible sandbox
        Backing("push", port_offset=43, url_key="push_api_base"),  # the FCM + APNs stand-in
        Backing("sms", port_offset=44, url_key="sms_api_base"),  # the Twilio Messages stand-in
    ),
    gateway=Gateway(
        name="envoy",
        port_offset=80,
        admin_offset=81,
        pod_port=8080,
        routes=(
            "petpro.mobile.v1.MobileService",
            "petpro.booking.v1.BookingService",
            "petpro.auth.v1.AuthService",
            "petpro.booking.v1.ClinicAdminService",
            "petpro.auth.v1.ClinicStaffService",
            "petpro.notification.v1.NotificationService",  # the calendar feed and its token, quiet hours
        ),
    ),
)
