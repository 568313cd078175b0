"""edge: MobileService (the BFF), Envoy config from the protos, the HTTP app behind Envoy."""
