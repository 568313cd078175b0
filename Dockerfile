# syntax=docker/dockerfile:1
# One image for every PetPro deployable; the command picks the service (the Helm chart sets it):
#   python -m auth_svc | booking_svc | payment_svc | notif_worker | edge   (gRPC services)
#   envoy --config-path /etc/envoy/envoy.json                                (the REST edge)
#   python -m petpro.migrations | python -m petpro.topics                    (Helm hook Jobs)
# Build: `make image` (docker or podman).  Runs as a non-root numeric UID with a read-only root
# filesystem; only /tmp needs to be writable.  No HEALTHCHECK: Kubernetes' gRPC probes do that.

# Exact tag (pin a digest in your registry mirror with PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:…)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a wheel of the project, installed with its runtime dependencies only into /opt/petpro ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen ./gen
COPY petpro ./petpro
COPY auth_svc ./auth_svc
COPY booking_svc ./booking_svc
COPY payment_svc ./payment_svc
COPY notif_worker ./notif_worker
COPY edge ./edge
RUN python -m venv /opt/petpro \
 && /opt/petpro/bin/pip wheel --wheel-dir /wheels . \
 && /opt/petpro/bin/pip install --no-index --find-links /wheels petpro \
 && /opt/petpro/bin/python -m compileall -q /opt/petpro/lib

# --- runtime: the interpreter, the venv, nothing else of the source tree ---
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="petpro" \
      org.opencontainers.image.description="PetPro services (auth, booking, payment, notif, edge) and Envoy" \
      org.opencontainers.image.source="https://github.com/petpro/petpro"
COPY --from=build /opt/petpro /opt/petpro
# the edge's /docs page: swagger-ui-dist as `make setup` installed it from npm (static files only)
COPY node_modules/swagger-ui-dist /opt/petpro/swagger-ui
ENV PATH=/opt/petpro/bin:$PATH \
    EDGE_SWAGGER_UI_DIR=/opt/petpro/swagger-ui \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PETPRO_HOME=/tmp/petpro
WORKDIR /tmp
USER 10001:10001
EXPOSE 7401 7402 7403 7404 7405 7482 8080
CMD ["python", "-m", "booking_svc"]
