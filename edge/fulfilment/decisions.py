"""The one decision table of payment fulfilment: what each answer of ConfirmBooking (and of the steps
around it) means for a paid payment.

Both entry points (the webhook and the sweep for lost webhooks) go through :func:`after_confirm`, so a
payment is refunded, retried or settled for the same reasons whoever finishes it:

* ``SETTLE``: the booking exists (ConfirmBooking answered it, a replay answers the same booking):
  record it on the payment (SettlePayment), which takes the payment out of the sweep's list;
* ``REFUND``: this payment can never get its booking (the slot went to somebody else, the reservation
  is closed or unknown, its id is not one): the money goes back, once (RefundPayment keyed by the
  payment, :func:`refund_request_id`);
* ``RETRY``: nothing is decided (a service is down or overloaded, a fault of ours, an answer nobody
  decided for): the webhook answers 503 so the provider delivers it again, the sweep leaves the payment
  for its next pass.  Never a refund on a guess;
* ``REJECT``: the event itself is not genuine (forged or stale signature, malformed): 400, the sender
  must not retry.  Only the verification step rejects: once PaymentService verified a paid payment it
  is real money, and no ConfirmBooking answer drops it.

A reason is decided by :data:`CONFIRM_REASONS` (booking's own reasons and the kit's, the reasons are
unique within booking's error domain); any other reason falls back to its status code in
:data:`CONFIRM_CODES`, which decides every code.  tests/unit/test_fulfilment_decisions.py derives the
reasons ConfirmBooking can answer from booking_svc's source and fails for one without a decision here.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from petpro.errors import Kind
from petpro.upstream import UpstreamError


class Action(StrEnum):
    SETTLE = "settle"  # the booking exists: record it on the payment
    REFUND = "refund"  # the booking can never exist: refund the payment
    RETRY = "retry"  # undecided now: the provider redelivers / the sweep comes back
    REJECT = "reject"  # not a genuine event (verification only): 400


# ConfirmBooking's error reasons → action.
CONFIRM_REASONS: Mapping[str, Action] = MappingProxyType(
    {
        # booking_svc's domain errors on the ConfirmBooking path
        "SLOT_NO_LONGER_AVAILABLE": Action.REFUND,  # paid after the hold expired, the slot is taken
        "SLOT_UNAVAILABLE": Action.REFUND,  # the slot is taken (the reason booking.proto documents)
        "RESERVATION_CLOSED": Action.REFUND,  # failed, cancelled, or confirmed with another payment
        "RESERVATION_NOT_FOUND": Action.REFUND,  # the order reference is no reservation of ours
        # a reservation's service and clinic are archived, never deleted: not found is a fault to look
        # at (a stale catalog, a restore), not a lost slot; retried, never refunded on that guess
        "SERVICE_NOT_FOUND": Action.RETRY,
        "CLINIC_NOT_FOUND": Action.RETRY,
        # the kit's answers (petpro.interceptors, petpro.dberrors) for any RPC
        "INVALID_ARGUMENT": Action.REFUND,  # a field violation: the order reference is no lock id
        "INVALID_VALUE": Action.REFUND,  # a value the database refuses: the same, found later
        "MALFORMED_REQUEST": Action.RETRY,  # our request did not decode there: our bug, not the payer's
        "TOKEN_MISSING": Action.RETRY,  # our credentials, were BookingService to ask for them
        "CONSTRAINT_VIOLATED": Action.RETRY,  # a concurrent write collided: the retry sees the winner
        "DEPENDENCY_UNAVAILABLE": Action.RETRY,  # booking's database unreachable
        "UPSTREAM_UNAVAILABLE": Action.RETRY,  # the call was cancelled
        "INTERNAL": Action.RETRY,  # a server fault (500 at the webhook)
    }
)

# Any other reason, by status code: every code is decided.
CONFIRM_CODES: Mapping[Kind, Action] = MappingProxyType(
    {
        Kind.INVALID_ARGUMENT: Action.REFUND,  # any field violation of (lock id, payment id)
        Kind.FAILED_PRECONDITION: Action.RETRY,  # a precondition nobody decided for: never refund on a guess
        Kind.OUT_OF_RANGE: Action.RETRY,
        Kind.UNAUTHENTICATED: Action.RETRY,  # our credentials: fixed by an operator, then retried
        Kind.PERMISSION_DENIED: Action.RETRY,  # the same
        Kind.NOT_FOUND: Action.RETRY,  # not the reservation (that is RESERVATION_NOT_FOUND): a fault
        Kind.ALREADY_EXISTS: Action.RETRY,
        Kind.ABORTED: Action.RETRY,  # a conflict: the same call succeeds when retried
        Kind.RESOURCE_EXHAUSTED: Action.RETRY,  # overloaded or throttled
        Kind.UNAVAILABLE: Action.RETRY,
        Kind.DEADLINE_EXCEEDED: Action.RETRY,
        Kind.INTERNAL: Action.RETRY,
    }
)

# PaymentService's verification: the sender's fault (forged, stale, malformed) is rejected.
VERIFY_CODES: Mapping[Kind, Action] = MappingProxyType(
    {Kind.INVALID_ARGUMENT: Action.REJECT, Kind.UNAUTHENTICATED: Action.REJECT}
)

# RefundPayment: nothing is left to refund, so the money is back (or going back) already.
REFUNDED_ALREADY = "PAYMENT_ALREADY_REFUNDED"


def after_confirm(error: UpstreamError | None) -> Action:
    """What follows ConfirmBooking's answer: its booking (``None``: no error) or its error."""
    if error is None:
        return Action.SETTLE
    return CONFIRM_REASONS.get(error.reason) or CONFIRM_CODES[error.kind]


def after_verify(error: UpstreamError) -> Action:
    """What follows a failed verification of a webhook: REJECT or RETRY."""
    return VERIFY_CODES.get(error.kind, Action.RETRY)


def refund_done(error: UpstreamError) -> bool:
    """A failed RefundPayment that still means the payment is refunded."""
    return error.reason == REFUNDED_ALREADY


def refund_request_id(payment_id: str) -> str:
    """The request id of a payment's refund by its fulfilment: one per payment, whichever entry point
    (or replica) sends it, so the provider refunds it once."""
    return f"fulfilment-{payment_id}"
