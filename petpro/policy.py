"""Method policy declared in the protos (``option (petpro.common.v1.policy) = {...}``).

The one source of which RPCs are public, idempotent (retried by client channels) and create a
resource (REST 201).  Read from the generated descriptors, so a proto change is all it takes.
"""

from __future__ import annotations

from functools import cache

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from petpro_api.common.v1 import options_pb2

NO_POLICY = options_pb2.MethodPolicy()


def _method(full_method: str) -> MethodDescriptor:
    """``"/petpro.booking.v1.BookingService/GetBooking"`` or ``"petpro.booking.v1.BookingService/GetBooking"``."""
    service, _, name = full_method.lstrip("/").partition("/")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]


def of_options(opts: descriptor_pb2.MethodOptions) -> options_pb2.MethodPolicy:
    """The policy in one method's ``MethodOptions`` (also those of a ``FileDescriptorSet`` read from
    bytes, e.g. by the edge's generators); all fields false when it declares none."""
    return opts.Extensions[options_pb2.policy] if opts.HasExtension(options_pb2.policy) else NO_POLICY


@cache
def policy(full_method: str) -> options_pb2.MethodPolicy:
    """The declared policy of one RPC (all fields false when it declares none).  The service's
    ``_pb2`` module must have been imported (its descriptors are then in the default pool)."""
    return of_options(_method(full_method).GetOptions())


def idempotent_methods(*services: ServiceDescriptor) -> tuple[str, ...]:
    """``"Service/Method"`` names of the idempotent RPCs of the given service descriptors
    (``booking_pb2.DESCRIPTOR.services_by_name["BookingService"]``), for client channels."""
    return tuple(
        f"{s.full_name}/{m.name}"
        for s in services
        for m in s.methods
        if policy(f"{s.full_name}/{m.name}").idempotent
    )


def retryable(*service_names: str) -> tuple[str, ...]:
    """``idempotent_methods`` by full service name ("petpro.booking.v1.BookingService"): the retry
    list of a client channel to those services.  Their ``_pb2`` modules must have been imported."""
    pool = descriptor_pool.Default()
    return idempotent_methods(*(pool.FindServiceByName(name) for name in service_names))


__all__ = ["idempotent_methods", "of_options", "policy", "retryable"]
