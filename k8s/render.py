"""``make k8s``: the Envoy config of the chart and the chart rendered with its default values.

1. ``k8s/helm/petpro/files/mesh.json`` — the chart's component lists from the mesh manifest
   (``petpro/mesh.py``, :func:`chart_mesh`): each service's module, env prefix, ports, backing
   services, peers and callers (the NetworkPolicies follow from them), Envoy's upstreams, the topics.
   The templates range over it; nothing in the chart spells a service's name or port.
2. ``k8s/helm/petpro/files/envoy.json`` — Envoy's bootstrap from the dev stack's generator
   (:func:`envoy_config`), upstreams named ``PETPRO_FULLNAME-<svc>`` (the chart substitutes the
   release's full name; Envoy resolves them as STRICT_DNS clusters).
3. ``k8s/manifests/*.yaml`` + ``kustomization.yaml`` — ``helm template petpro k8s/helm/petpro
   --namespace petpro`` with the default values (helm-python-sdk, no helm binary), for
   ``kubectl apply -k k8s/manifests`` without Helm.

``python k8s/render.py --check`` fails when any is stale (``make test`` runs it, like gen-check).
Dev tooling: not part of the image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "k8s" / "helm" / "petpro"
MANIFESTS = ROOT / "k8s" / "manifests"
MESH_JSON = CHART / "files" / "mesh.json"
ENVOY_JSON = CHART / "files" / "envoy.json"
RELEASE, NAMESPACE = "petpro", "petpro"

# Envoy's admin port in the chart (templates/envoy.yaml); its listener is the manifest's gateway.pod_port
ENVOY_ADMIN = 9901
PLACEHOLDER = "PETPRO_FULLNAME"


def chart_mesh() -> dict[str, Any]:
    """What the chart needs of the mesh manifest (written to files/mesh.json).  Container ports are
    the dev stack's default ports (README "Services and ports"), so logs and docs read the same."""
    from petpro.mesh import MESH

    components: dict[str, dict[str, Any]] = {}
    for s in MESH.services:
        c: dict[str, Any] = {
            "module": s.package,
            "prefix": s.env_prefix.removesuffix("_"),
            "grpcPort": MESH.port(s.name),
            "metricsPort": MESH.port(f"{s.name}_metrics"),
        }
        if s.http_offset is not None:
            c["httpPort"] = MESH.port(f"{s.name}_http")
        c["needs"] = list(s.needs)  # backing services: Secret env vars and egress (networkPolicy.egress)
        c["peers"] = list(MESH.peers(s.name))  # <PEER>_ADDR and egress
        c["callers"] = list(MESH.callers(s.name))  # ingress
        components[s.name] = c
    return {
        "_generated": "by `make k8s` (k8s/render.py) from the mesh manifest petpro/mesh.py; do not edit",
        "services": [s.name for s in MESH.services],
        "components": components,
        "gateway": {"peers": list(MESH.gateway_peers())},
        "topics": list(MESH.topic_names()),
        "topicConfigs": {
            t.name: {"retention.ms": str(t.retention_ms)} for t in MESH.topics if t.retention_ms is not None
        },
    }


def mesh_json() -> str:
    return json.dumps(chart_mesh(), indent=1) + "\n"


# the HTTP connection manager's client-address fields (edge.gateway.config.ClientAddress) are the
# release's values (envoy.clientAddress): files/envoy.json holds this key in their place and
# templates/envoy.yaml writes the fields there
CLIENT_ADDRESS_KEY, CLIENT_ADDRESS_PLACEHOLDER = "petproClientAddress", "PETPRO_CLIENT_ADDRESS"
CLIENT_ADDRESS_FIELDS = (
    "useRemoteAddress",
    "xffNumTrustedHops",
    "originalIpDetectionExtensions",
    "internalAddressConfig",
)


def envoy_config(trusted_hops: int = 1, trusted_cidrs: tuple[str, ...] = ()) -> dict[str, Any]:
    """THE call to the dev stack's Envoy generator (edge.gateway.config.build_config over gen/'s
    gateway outputs), with the chart's DNS names as upstreams (the manifest's servers of each route)
    and the client-address model of ``envoy.clientAddress`` (default: the chart's Ingress, one hop)."""
    from edge.gateway.config import ClientAddress, build_config
    from petpro.mesh import MESH
    from petpro.settings import StackSettings

    def upstream(name: str, port: str) -> tuple[str, int]:
        return (f"{PLACEHOLDER}-{name}", MESH.port(port))

    (http,) = [s.name for s in MESH.services if s.http_offset is not None]
    return build_config(
        StackSettings(host="0.0.0.0"),  # admin (probes) and listener on the pod's addresses
        listen_port=MESH.gateway.pod_port,
        admin_port=ENVOY_ADMIN,
        http_upstream=upstream(http, f"{http}_http"),
        upstreams={g: upstream(MESH.server_of(g).name, MESH.server_of(g).name) for g in MESH.gateway.routes},
        client_address=ClientAddress(trusted_hops=trusted_hops, trusted_cidrs=trusted_cidrs),
    )


def http_connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = [x for x in config["staticResources"]["listeners"] if x["name"] == "edge"]
    hcm: dict[str, Any] = listener["filterChains"][0]["filters"][0]["typedConfig"]
    return hcm


def envoy_json() -> str:
    config = envoy_config()
    hcm = http_connection_manager(config)
    for key in CLIENT_ADDRESS_FIELDS:
        hcm.pop(key, None)
    hcm[CLIENT_ADDRESS_KEY] = CLIENT_ADDRESS_PLACEHOLDER
    return json.dumps(config, indent=1, sort_keys=True) + "\n"


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
) -> dict[str, str]:
    """{template path: manifest text} of the chart (hooks included, empty templates dropped)."""
    import helm_python as helm

    loaded = helm.Chart.load(str(chart))
    try:
        out = loaded.render(values or {}, name=release, namespace=namespace, is_install=True)
    finally:
        loaded.close()
    return {k: v for k, v in sorted(out.items()) if v.strip() and not k.endswith("NOTES.txt")}


def manifest_files(rendered: dict[str, str]) -> dict[str, str]:
    """k8s/manifests/<template>.yaml for each template, plus the kustomization listing them."""
    files: dict[str, str] = {}
    header = "# Generated by `make k8s` from k8s/helm/petpro with default values; do not edit.\n"
    for key, text in rendered.items():
        name = Path(key).name
        files[name] = header + text.strip() + "\n"
    files["kustomization.yaml"] = (
        header + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {NAMESPACE}\nresources:\n" + "".join(f"  - {n}\n" for n in sorted(files))
    )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python k8s/render.py", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed outputs are stale")
    args = parser.parse_args(argv)

    stale: list[str] = []
    for path, fresh in ((MESH_JSON, mesh_json()), (ENVOY_JSON, envoy_json())):
        if args.check:
            if not path.exists() or path.read_text() != fresh:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fresh)

    files = manifest_files(render())
    if args.check:
        present = {p.name for p in MANIFESTS.glob("*.yaml")}
        for name, text in files.items():
            path = MANIFESTS / name
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        stale += [f"k8s/manifests/{n} (no longer rendered)" for n in sorted(present - set(files))]
        if stale:
            print(
                "stale Kubernetes outputs (run `make k8s` and commit):\n  " + "\n  ".join(stale),
                file=sys.stderr,
            )
            return 1
        print(f"k8s: files/mesh.json, files/envoy.json and {len(files)} manifests are fresh")
        return 0
    MANIFESTS.mkdir(parents=True, exist_ok=True)
    for old in MANIFESTS.glob("*.yaml"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (MANIFESTS / name).write_text(text)
    print(f"k8s: wrote files/mesh.json, files/envoy.json and {len(files)} files in k8s/manifests/")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
