"""The gateway's build outputs in ``gen/``, written by ``make gen`` from the descriptor set and checked
fresh by ``make gen-check`` like the stubs (nothing here runs at the edge's start)::

    gen/openapi.json            the public REST API (OpenAPI 3.1), served as /openapi.json and /docs
    gen/envoy/transcoder.binpb  the descriptor set Envoy's gRPC-JSON transcoder loads (ours without
                                source info, plus google.rpc.Status/ErrorInfo/BadRequest)
    gen/envoy/routes.json       the REST route table with each RPC's method policy (public,
                                idempotent, creates): Envoy's per-RPC routes, retries and 201s

Envoy's bootstrap itself depends on where the upstreams are, so it is rendered from these by the one
generator :func:`edge.gateway.config.build_config` (``python -m edge.gateway render``), for the dev
stack at start and for Kubernetes when the chart is rendered.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from google.protobuf import descriptor_pb2

from edge.gateway.routes import RestRoute, route_table

IMAGE_NAME = "petpro.binpb"
OPENAPI_NAME = "openapi.json"
ENVOY_DIR = "envoy"
TRANSCODER_NAME = "transcoder.binpb"
ROUTES_NAME = "routes.json"


def gen_dir() -> Path:
    """The ``gen/`` directory holding the generated ``petpro.<domain>.v1`` packages."""
    from petpro.mobile.v1 import mobile_pb2

    return Path(mobile_pb2.__file__).resolve().parents[3]


def descriptor_path(root: Path | None = None) -> Path:
    """``gen/petpro.binpb``: FileDescriptorSet with imports and source info."""
    return (root or gen_dir()) / IMAGE_NAME


def openapi_path(root: Path | None = None) -> Path:
    return (root or gen_dir()) / OPENAPI_NAME


def envoy_dir(root: Path | None = None) -> Path:
    return (root or gen_dir()) / ENVOY_DIR


def load_routes(root: Path | None = None) -> list[RestRoute]:
    rows = json.loads((envoy_dir(root) / ROUTES_NAME).read_text(encoding="utf-8"))
    return [RestRoute(**row) for row in rows]


def load_openapi(root: Path | None = None) -> dict:
    return json.loads(openapi_path(root).read_text(encoding="utf-8"))


def _dump(data: object) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def write_outputs(root: Path) -> list[Path]:
    """Generate the gateway's outputs into ``root`` (a gen/ tree that already holds petpro.binpb)."""
    from edge.gateway.config import transcoder_descriptor_set
    from edge.gateway.openapi import build_openapi

    image = descriptor_path(root).read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(image)
    routes = route_table(fds)
    out = envoy_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / TRANSCODER_NAME, out / ROUTES_NAME, openapi_path(root)]
    written[0].write_bytes(transcoder_descriptor_set(fds))
    written[1].write_text(_dump([asdict(r) for r in routes]), encoding="utf-8")
    written[2].write_text(_dump(build_openapi(image, routes=routes)), encoding="utf-8")
    return written


__all__ = ["descriptor_path", "envoy_dir", "gen_dir", "load_openapi", "load_routes", "openapi_path",
           "write_outputs"]
