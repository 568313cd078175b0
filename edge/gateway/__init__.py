"""The REST gateway: Envoy's config generated from the protos' descriptors and method policy, the Lua
problem+json filter, the OpenAPI generator, and the Envoy launcher (``python -m edge.gateway``)."""
