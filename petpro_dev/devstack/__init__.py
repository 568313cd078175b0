"""The one-command dev stack: embedded PostgreSQL, Redis, Kafka-protocol broker, SMTP sink, then the
services, as detached processes under one state folder (``PETPRO_HOME``, default ``.petpro``).

Entry points: the ``petpro`` CLI (:mod:`petpro_dev.cli`) and :class:`Stack` for tests and benchmarks.
The names below are imported on first use, so ``python -m petpro_dev.devstack.smtp_sink`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from petpro_dev.devstack.component import Component, Context, Launch, Step, Task, TaskFailed
    from petpro_dev.devstack.components import default_components, infra, python_grpc_service, services
    from petpro_dev.devstack.mail import MailMessage, list_messages, wait_for_message
    from petpro_dev.devstack.replica import ExtraReplica, Metrics, stack_metrics
    from petpro_dev.devstack.stack import ComponentStatus, Stack, StackError, StepResult, UpReport

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["Component", "Context", "Launch", "Step", "Task", "TaskFailed"], "component"),
    **dict.fromkeys(["default_components", "infra", "python_grpc_service", "services"], "components"),
    **dict.fromkeys(["MailMessage", "list_messages", "wait_for_message"], "mail"),
    **dict.fromkeys(["ExtraReplica", "Metrics", "stack_metrics"], "replica"),
    **dict.fromkeys(["ComponentStatus", "Stack", "StackError", "StepResult", "UpReport"], "stack"),
}

__all__ = [
    "Component",
    "ComponentStatus",
    "Context",
    "ExtraReplica",
    "Launch",
    "MailMessage",
    "Metrics",
    "Stack",
    "StackError",
    "Step",
    "StepResult",
    "Task",
    "TaskFailed",
    "UpReport",
    "default_components",
    "infra",
    "list_messages",
    "python_grpc_service",
    "services",
    "stack_metrics",
    "wait_for_message",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
