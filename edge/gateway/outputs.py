"""The gateway's build outputs in ``gen/`` (paths and loaders), written by ``make gen``
(:func:`edge.gateway.build.write_outputs`) from the descriptor set and checked
fresh by ``make gen-check`` like the stubs (nothing here runs at the edge's start)::

    gen/petpro_api/openapi.json             the public REST API (OpenAPI 3.1): /openapi.json, /docs
    gen/petpro_api/envoy_transcoder.binpb   the descriptor set Envoy's gRPC-JSON transcoder loads
                                            (ours without source info, plus google.rpc.Status,
                                            ErrorInfo, BadRequest)
    gen/petpro_api/envoy_routes.json        the REST route table with each RPC's method policy
                                            (public, idempotent, creates): Envoy's per-RPC routes,
                                            retries and 201s

Envoy's bootstrap itself depends on where the upstreams are, so it is rendered from these by the one
generator :func:`edge.gateway.config.build_config` (``python -m edge.gateway render``), for the dev
stack at start and for Kubernetes when the chart is rendered.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.gateway.routes import RestRoute

IMAGE_NAME = "petpro.binpb"
OPENAPI_NAME = "openapi.json"
TRANSCODER_NAME = "envoy_transcoder.binpb"
ROUTES_NAME = "envoy_routes.json"


def gen_dir() -> Path:
    """The generated ``petpro_api`` package (``gen/petpro_api``): the descriptor set and these
    outputs live in it, so they install with it."""
    import petpro_api

    return Path(petpro_api.__file__).resolve().parent


def descriptor_path(root: Path | None = None) -> Path:
    """``gen/petpro_api/petpro.binpb``: FileDescriptorSet with imports and source info."""
    return (root or gen_dir()) / IMAGE_NAME


def openapi_path(root: Path | None = None) -> Path:
    return (root or gen_dir()) / OPENAPI_NAME


def envoy_dir(root: Path | None = None) -> Path:
    """Where Envoy's build inputs are (the package directory itself: flat files install as package data)."""
    return root or gen_dir()


def load_routes(root: Path | None = None) -> list[RestRoute]:
    rows = json.loads((envoy_dir(root) / ROUTES_NAME).read_text(encoding="utf-8"))
    return [RestRoute(**row) for row in rows]


def load_openapi(root: Path | None = None) -> dict:
    return json.loads(openapi_path(root).read_text(encoding="utf-8"))


__all__ = ["descriptor_path", "envoy_dir", "gen_dir", "load_openapi", "load_routes", "openapi_path"]
