"""A local stand-in for the push providers (FCM HTTP v1 with its OAuth token endpoint, and APNs over
HTTP/2) that speaks their documented APIs, for the dev stack and the tests: no network, dev keys made
at first run under ``$PETPRO_HOME/push/``."""
