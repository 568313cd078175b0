# One image for every PetPro deployable; the command picks the service (the Helm chart sets it):
#   python -m auth_svc | booking_svc | payment_svc | notif_worker | edge   (gRPC services)
#   envoy --config-path /etc/envoy/envoy.json                                (the REST edge)
#   python -m petpro.migrations | python -m petpro.topics                    (Helm hook Jobs)
# Build: `make image` (docker or podman; BuildKit).  Runs as a non-root numeric UID with a read-only root
# filesystem; only /tmp needs to be writable.  No HEALTHCHECK: Kubernetes' gRPC probes do that.
# Layers, most stable first: the dependencies (from pyproject.toml's list alone), then the project's own
# code, so a change to the source rebuilds only the last, small layer (docs/operations.md "The image").

# Exact tag (pin a digest in your registry mirror with PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:…);
# `make image` falls back to a base made from the Debian mirror when no registry is reachable.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- requirements: the runtime dependency list of pyproject.toml; its layer keeps its cache as long as
#     the list is the same, whatever else changes in pyproject.toml ---
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /requirements.txt

# --- deps: a venv of the runtime dependencies, shared objects stripped, bytecode compiled, no pip ---
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# binutils (strip) lives in this stage only
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils=2.40-2 \
 && rm -rf /var/lib/apt/lists/*
# CLDR data of the languages the notifications speak (notif_worker/domain/wording.py SUPPORTED, a unit
# test holds the two equal; babel's data for the ~800 others is 31 MB): root, each language, its regions
ARG LOCALES="en de fr es"
# parts of packages nothing imports at run time (tests/integration/test_image_prune.py runs the payment and
# SMS adapters' suites with them unimportable): stripe's request-parameter TypedDicts (typing only, 14 MB)
# and every Twilio REST domain but those named (the Messages API is `api`; the others are 42 MB)
ARG TYPING_ONLY="stripe/params"
ARG TWILIO_DOMAINS="api"
COPY --from=requirements /requirements.txt /requirements.txt
# SC2086: the word lists LOCALES and TYPING_ONLY are split into words on purpose
# hadolint ignore=SC2086
RUN python -m venv /opt/petpro \
 && /opt/petpro/bin/pip install --no-compile -r /requirements.txt \
 && /opt/petpro/bin/python -m pip uninstall -y pip setuptools wheel \
 && find /opt/petpro -name '*.so*' -type f -exec strip --strip-unneeded {} + \
 && find /opt/petpro/lib -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
 && find /opt/petpro/lib -type f \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.h' \) -delete \
 && for p in $TYPING_ONLY; do rm -rf /opt/petpro/lib/python3*/site-packages/$p; done \
 && for d in /opt/petpro/lib/python3*/site-packages/twilio/rest/*/; do \
      n="$(basename "$d")"; case " $TWILIO_DOMAINS " in *" $n "*) ;; *) rm -rf "$d" ;; esac; done \
 && keep=" root.dat $(for l in $LOCALES; do printf ' %s.dat ' "$l"; done)" \
 && for f in /opt/petpro/lib/python3*/site-packages/babel/locale-data/*.dat; do \
      n="${f##*/}"; case "$keep" in *" $n "*|*" ${n%%_*}.dat "*) ;; *) rm "$f" ;; esac; done \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/petpro/lib

# --- app: the project's own packages (a wheel, installed beside the venv: /opt/petpro/app) ---
FROM ${PYTHON_IMAGE} AS app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/builder && /opt/builder/bin/pip install "setuptools==80.9.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen ./gen
COPY petpro ./petpro
COPY auth_svc ./auth_svc
COPY booking_svc ./booking_svc
COPY payment_svc ./payment_svc
COPY notif_worker ./notif_worker
COPY edge ./edge
RUN /opt/builder/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/builder/bin/pip install --no-deps --no-compile --target /opt/petpro/app /wheels/petpro-*.whl \
 && rm -rf /opt/petpro/app/bin \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/petpro/app

# --- sbom: CycloneDX of the image's venv and app (`make image` writes build/sbom.cdx.json) ---
FROM ${PYTHON_IMAGE} AS sbom-tool
RUN python -m venv /opt/sbom && /opt/sbom/bin/pip install --no-cache-dir "cyclonedx-bom==7.5.0"
FROM sbom-tool AS sbom-run
COPY --from=deps /opt/petpro /opt/petpro
COPY --from=app /opt/petpro/app /opt/petpro/app
RUN PYTHONPATH=/opt/petpro/app /opt/sbom/bin/cyclonedx-py environment --output-format JSON \
      --output-file /sbom.cdx.json /opt/petpro/bin/python
FROM scratch AS sbom
COPY --from=sbom-run /sbom.cdx.json /sbom.cdx.json

# --- runtime: the interpreter, the venv, the app; no pip, no build tools, no source tree ---
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="petpro" \
      org.opencontainers.image.description="PetPro services (auth, booking, payment, notif, edge) and Envoy" \
      org.opencontainers.image.source="https://github.com/petpro/petpro"
# the base's own pip (python images ship one; the venv has none)
RUN rm -rf /usr/local/lib/python3*/site-packages/pip /usr/local/lib/python3*/site-packages/pip-* \
      /usr/local/bin/pip* /usr/share/python-wheels
COPY --from=deps /opt/petpro /opt/petpro
# the edge's /docs page: the two files it serves of swagger-ui-dist (npm, as `make setup` installed it)
COPY node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
     node_modules/swagger-ui-dist/LICENSE /opt/petpro/swagger-ui/
COPY --from=app /opt/petpro/app /opt/petpro/app
ENV PATH=/opt/petpro/bin:$PATH \
    PYTHONPATH=/opt/petpro/app \
    EDGE_SWAGGER_UI_DIR=/opt/petpro/swagger-ui \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PETPRO_HOME=/tmp/petpro
WORKDIR /tmp
USER 10001:10001
EXPOSE 7401 7402 7403 7404 7405 7482 8080
CMD ["python", "-m", "booking_svc"]
