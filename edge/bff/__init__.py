"""The mobile BFF: ``petpro.mobile.v1.MobileService``, the gRPC service Envoy transcodes the REST API to."""
