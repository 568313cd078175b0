"""``make gen``'s hook for the edge: the gateway's build outputs (:mod:`edge.gateway.outputs`) from a
freshly generated descriptor set."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from google.protobuf import descriptor_pb2

from edge.gateway.config import transcoder_descriptor_set
from edge.gateway.openapi import build_openapi
from edge.gateway.outputs import ROUTES_NAME, TRANSCODER_NAME, descriptor_path, envoy_dir, openapi_path
from edge.gateway.routes import route_table


def _dump(data: object) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def write_outputs(root: Path) -> list[Path]:
    """Generate the gateway's outputs into ``root`` (a gen/ tree that already holds petpro.binpb)."""
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


__all__ = ["write_outputs"]
