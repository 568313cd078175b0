"""Errors in Stripe's wire format, so the SDK raises the same exception classes as against Stripe."""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs"


class StripeError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status``.

    The SDK picks the exception class from the status and ``type``: 400/404 ``invalid_request_error`` →
    ``InvalidRequestError``, ``idempotency_error`` → ``IdempotencyError``, 401 → ``AuthenticationError``,
    402 → ``CardError``.  ``replayable`` marks errors Stripe keeps for an idempotency key (the endpoint
    started executing); validation errors are not kept, so a corrected retry with the same key works.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        decline_code: str | None = None,
        replayable: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.decline_code = decline_code
        self.replayable = replayable
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.param is not None:
            err["param"] = self.param
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"{DOCS}/error-codes/{self.code.replace('_', '-')}"
        if self.decline_code is not None:
            err["decline_code"] = self.decline_code
        err.update(self.extra)
        return {"error": err}


def resource_missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


def parameter_missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", param=param, code="parameter_missing")


def parameter_unknown(param: str) -> StripeError:
    return StripeError(400, f"Received unknown parameter: {param}", param=param, code="parameter_unknown")


def invalid_param(param: str, message: str, code: str = "parameter_invalid_empty") -> StripeError:
    return StripeError(400, message, param=param, code=code)


def invalid_integer(param: str, value: object) -> StripeError:
    return StripeError(400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")


def not_supported(param: str, what: str) -> StripeError:
    """A valid Stripe parameter the sandbox does not implement (Stripe would accept it)."""
    return StripeError(
        400, f"The Stripe sandbox does not support {what}.", param=param, code="sandbox_unsupported"
    )
