"""The fulfilment's decision table against every answer ConfirmBooking can give.

The errors are derived from the code that answers ConfirmBooking, not listed by hand: from booking's
servicer method ``ConfirmBooking`` (and from the kit's interceptor, which validates the request and maps
exceptions to statuses), every function reachable by name in booking_svc and petpro is read, and every
domain error it raises or builds is collected with its code and reason.  (Reachable by name
over-approximates, which is the safe side: an error collected that the path never raises still gets a
decision.)  A new reason on that path without an entry in ``CONFIRM_REASONS`` fails here; a new code
without one in ``CONFIRM_CODES`` too."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.fulfilment.decisions import (
    CONFIRM_CODES,
    CONFIRM_REASONS,
    Action,
    after_confirm,
    after_verify,
    refund_done,
)
from petpro.errors import DomainError, Kind
from petpro.upstream import UpstreamError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("booking_svc", "petpro")  # the code that answers booking's RPCs
ENTRIES = {  # (package, function name): where an answer of ConfirmBooking starts
    ("booking_svc", "ConfirmBooking"),  # the servicer method
    ("petpro", "_admit"),  # the kit's interceptor: authentication and validation of the request
    ("petpro", "status_for"),  # the kit's interceptor: an exception → its status
}
Function = ast.FunctionDef | ast.AsyncFunctionDef


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), ast.parse(path.read_text())


def _error_class(node: ast.expr, namespace: dict[str, object]) -> type[DomainError] | None:
    """The domain error class ``X`` of an expression ``X(...)`` or ``X.field(...)``, if it is one."""
    if isinstance(node, ast.Attribute):
        node = node.value
    found = namespace.get(node.id) if isinstance(node, ast.Name) else None
    return found if isinstance(found, type) and issubclass(found, DomainError) else None


def _built(call: ast.Call, cls: type[DomainError]) -> tuple[Kind, str] | None:
    """(code, reason) of ``cls(...)``: the class's own, or a literal ``reason=`` / ``Kind.X`` argument.
    None when either is computed (an upstream's error passed through: decided by its code, whatever it
    is, see test_every_code_has_a_decision)."""
    kind, reason = cls.kind, cls.reason
    for value in [*call.args, *(kw.value for kw in call.keywords if kw.arg != "reason")]:
        if (
            isinstance(value, ast.Attribute)
            and isinstance(value.value, ast.Name)
            and value.value.id == "Kind"
        ):
            kind = Kind[value.attr]
        elif isinstance(value, ast.Subscript) and getattr(value.value, "id", "") == "Kind":
            return None
    for kw in call.keywords:
        if kw.arg == "reason":
            if not isinstance(kw.value, ast.Constant):
                return None
            reason = str(kw.value.value)
    return kind, reason


def confirm_booking_errors() -> set[tuple[Kind, str]]:
    """(code, reason) of every domain error the functions reachable from the entries raise or build."""
    functions: dict[str, list[tuple[str, Function]]] = {}
    for module, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.setdefault(node.name, []).append((module, node))
    todo = [
        (module, fn)
        for package, name in ENTRIES
        for module, fn in functions.get(name, [])
        if module.split(".")[0] == package
    ]
    assert len(todo) >= len(ENTRIES), f"an entry of ConfirmBooking's path is gone: {ENTRIES}"
    seen: set[tuple[str, int]] = set()
    errors: set[tuple[Kind, str]] = set()
    while todo:
        module, fn = todo.pop()
        if (module, fn.lineno) in seen:
            continue
        seen.add((module, fn.lineno))
        namespace = vars(importlib.import_module(module))
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            cls = _error_class(node.func, namespace)
            if cls is not None and (found := _built(node, cls)) is not None:
                errors.add(found)
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            todo += functions.get(callee, [])
    return errors


CONFIRM_ERRORS = sorted(confirm_booking_errors(), key=lambda e: (e[0].name, e[1]))


def test_the_derivation_finds_the_errors_of_the_confirm_path() -> None:
    """The walk sees what it must: booking's reasons for a lost or closed reservation, the request's
    validation, the database errors the kit maps."""
    assert {
        (Kind.FAILED_PRECONDITION, "SLOT_NO_LONGER_AVAILABLE"),
        (Kind.FAILED_PRECONDITION, "RESERVATION_CLOSED"),
        (Kind.NOT_FOUND, "RESERVATION_NOT_FOUND"),
        (Kind.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (Kind.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE"),
        (Kind.FAILED_PRECONDITION, "CONSTRAINT_VIOLATED"),
    } <= set(CONFIRM_ERRORS)


@pytest.mark.parametrize(("kind", "reason"), CONFIRM_ERRORS, ids=lambda v: getattr(v, "name", v))
def test_every_reason_confirm_booking_can_answer_has_a_decision(kind: Kind, reason: str) -> None:
    assert reason in CONFIRM_REASONS, f"ConfirmBooking may answer {kind.name} {reason}: decide it"


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.name)
def test_every_code_has_a_decision(kind: Kind) -> None:
    """Any reason nobody listed (another service's, a future one) is decided by its code."""
    assert kind in CONFIRM_CODES
    assert after_confirm(UpstreamError("x", kind, reason=f"NEW_{kind.name}")) is CONFIRM_CODES[kind]


# What each answer must do: the money goes back only when the booking can never exist.
EXPECTED = {
    "SLOT_NO_LONGER_AVAILABLE": Action.REFUND,
    "SLOT_UNAVAILABLE": Action.REFUND,
    "RESERVATION_CLOSED": Action.REFUND,
    "RESERVATION_NOT_FOUND": Action.REFUND,
    "INVALID_ARGUMENT": Action.REFUND,
    "INVALID_VALUE": Action.REFUND,
    "SERVICE_NOT_FOUND": Action.RETRY,
    "CLINIC_NOT_FOUND": Action.RETRY,
    "CONSTRAINT_VIOLATED": Action.RETRY,
    "MALFORMED_REQUEST": Action.RETRY,
    "DEPENDENCY_UNAVAILABLE": Action.RETRY,
    "UPSTREAM_UNAVAILABLE": Action.RETRY,
    "TOKEN_MISSING": Action.RETRY,
    "INTERNAL": Action.RETRY,
}


@pytest.mark.parametrize(("reason", "action"), sorted(EXPECTED.items()))
def test_each_reason_is_decided_as_specified(reason: str, action: Action) -> None:
    kinds = [k for k, r in CONFIRM_ERRORS if r == reason] or [Kind.FAILED_PRECONDITION]
    for kind in kinds:
        assert after_confirm(UpstreamError("x", kind, reason=reason)) is action


def test_the_table_decides_nothing_unspecified() -> None:
    assert set(CONFIRM_REASONS) == set(EXPECTED)


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (Kind.UNAVAILABLE, Action.RETRY),
        (Kind.DEADLINE_EXCEEDED, Action.RETRY),
        (Kind.RESOURCE_EXHAUSTED, Action.RETRY),
        (Kind.PERMISSION_DENIED, Action.RETRY),
        (Kind.ABORTED, Action.RETRY),
        (Kind.FAILED_PRECONDITION, Action.RETRY),
        (Kind.INVALID_ARGUMENT, Action.REFUND),
    ],
)
def test_unlisted_reasons_by_code(kind: Kind, action: Action) -> None:
    assert after_confirm(UpstreamError("x", kind, reason=kind.name)) is action


def test_a_booking_is_settled_and_only_verification_rejects() -> None:
    assert after_confirm(None) is Action.SETTLE
    assert Action.REJECT not in {*CONFIRM_REASONS.values(), *CONFIRM_CODES.values()}
    assert (
        after_verify(UpstreamError("x", Kind.INVALID_ARGUMENT, reason="INVALID_SIGNATURE")) is Action.REJECT
    )
    assert after_verify(UpstreamError("x", Kind.UNAVAILABLE, reason="UNAVAILABLE")) is Action.RETRY


def test_a_refund_of_a_payment_refunded_already_is_done() -> None:
    assert refund_done(UpstreamError("x", Kind.FAILED_PRECONDITION, reason="PAYMENT_ALREADY_REFUNDED"))
    assert not refund_done(UpstreamError("x", Kind.FAILED_PRECONDITION, reason="PAYMENT_GATEWAY_ERROR"))
