"""The mobile BFF (``petpro.mobile.v1.MobileService``) and the payment-webhook use case."""
