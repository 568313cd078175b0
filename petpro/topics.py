"""``python -m petpro.topics``: create the Kafka topics the mesh uses, if missing (kafka-python admin).

The production counterpart of what ``petpro up`` does for the embedded broker; the Helm chart runs it
as a pre-install/pre-upgrade hook Job.  Settings (env): ``KAFKA_BOOTSTRAP_SERVERS`` (required),
``PETPRO_KAFKA_TOPICS`` (JSON list, default: every topic of the mesh manifest, ``petpro/mesh.py``, each
followed by its DLQ), ``PETPRO_KAFKA_PARTITIONS`` (the manifest's 6: two, three or six notif_worker
replicas share them evenly), ``PETPRO_KAFKA_REPLICATION_FACTOR`` (1).  A topic the manifest gives a
retention is created with ``retention.ms`` (its DLQ with the broker's default).  Existing topics are
left as they are (partitions and configs are never changed here).
"""

from __future__ import annotations

import logging
import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from petpro.mesh import MESH
from petpro.settings import load

log = logging.getLogger("petpro.topics")


class TopicSettings(BaseSettings):
    """The topics of the mesh: created by ``petpro up`` (dev stack) and by the Helm hook Job."""

    model_config = SettingsConfigDict(env_prefix="PETPRO_KAFKA_", env_file=".env", extra="ignore")

    topics: tuple[str, ...] = MESH.topic_names()
    partitions: int = Field(default=MESH.partitions, ge=1)
    replication_factor: int = Field(default=1, ge=1)


def topic_configs(name: str) -> dict[str, str]:
    """Broker configs of a topic as the manifest declares them (a DLQ keeps the broker's default)."""
    for topic in MESH.topics:
        if name == topic.name and topic.retention_ms is not None:
            return {"retention.ms": str(topic.retention_ms)}
    return {}


def ensure_topics(bootstrap: str, settings: TopicSettings, *, client_id: str = "petpro-topics") -> list[str]:
    """Create the missing topics; returns the ones created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), client_id=client_id, request_timeout_ms=10_000
    )
    try:
        existing = set(admin.list_topics())
        missing = [t for t in settings.topics if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=settings.partitions,
                            replication_factor=settings.replication_factor,
                            topic_configs=topic_configs(t),
                        )
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another job created them meanwhile
        return missing
    finally:
        admin.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS is required (host:9092[,host:9092…])")
    settings = load(TopicSettings)
    created = ensure_topics(bootstrap, settings)
    log.info("topics: %s; created: %s", ", ".join(settings.topics), ", ".join(created) or "none")


if __name__ == "__main__":
    main()
