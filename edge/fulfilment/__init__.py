"""Payment fulfilment: every paid payment ends in exactly one booking or one refund.

One use case, :class:`PaymentFulfilment`, with two entry points.  The webhook (edge/web's
``POST /webhooks/stripe``) has PaymentService verify and record the provider's signed event and, on a
paid Checkout's fulfilment event, fulfils the payment; the sweep (a background task of the edge, every
``EDGE_RECONCILE_SECONDS``) lists the succeeded payments nobody settled for
``EDGE_RECONCILE_GRACE_SECONDS``, i.e. whose webhook was lost, and fulfils each the same way.
Fulfilling is ConfirmBooking (lock id = the payment's order reference), then one decision table
(:mod:`edge.fulfilment.decisions`) maps its answer to an action: the booking → settle the payment
(the payment leaves the sweep's list, so a normal booking is confirmed once and the sweep never sees
it): SettlePayment in the same call, or, as the edge runs it (``EDGE_SETTLE_BATCH_SECONDS``), queued
and settled with the other confirmed payments by one SettlePayments call a fraction of a second later
(:class:`Settlements`; a settlement lost on the way is the sweep's after its grace); a slot that is gone, a reservation closed or unknown → RefundPayment under the request
id ``fulfilment-<payment id>`` (one refund, whichever entry point or replica sends it); anything
transient or undecided → retry (503 to the provider, or the next sweep).  The webhook's HTTP answer
follows from the outcome (2xx confirmed / refunded / ignored / recorded, 400 rejected, 503 retry).  The
sweep logs ``reconcile: booking confirmed without a webhook`` only for a payment it really finished
itself, and counts them in ``petpro_edge_reconciled_payments_total{outcome}``; its passes in
``petpro_edge_fulfilment_sweeps_total``.

Modules: ``decisions`` (the table), ``ports`` (what it needs of PaymentService and BookingService),
``use_case`` (the use case and its entry points), ``adapters`` (the ports over gRPC).
"""

from __future__ import annotations

from edge.fulfilment.adapters import GrpcBookings, GrpcPayments
from edge.fulfilment.decisions import Action, after_confirm, refund_request_id
from edge.fulfilment.ports import Bookings, PaidPayment, Payments, VerifiedEvent
from edge.fulfilment.use_case import (
    FULFILMENT_EVENTS,
    REFUND_REASON_TEXT,
    Fulfilled,
    Outcome,
    PaymentFulfilment,
    Settlements,
    WebhookResult,
)

__all__ = [
    "FULFILMENT_EVENTS",
    "REFUND_REASON_TEXT",
    "Action",
    "Bookings",
    "Fulfilled",
    "GrpcBookings",
    "GrpcPayments",
    "Outcome",
    "PaidPayment",
    "PaymentFulfilment",
    "Payments",
    "Settlements",
    "VerifiedEvent",
    "WebhookResult",
    "after_confirm",
    "refund_request_id",
]
