"""The edge's HTTP app behind Envoy: webhooks route, /openapi.json, /docs, the clinic dashboard."""
