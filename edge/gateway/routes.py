"""The REST route table: every ``google.api.http`` rule of the transcoded services, with the method
policy declared next to the RPC in the protos (``option (petpro.common.v1.policy) = {...}``).

One table for everything that treats a route differently: Envoy's router (retries only for
``idempotent`` methods), the Lua filter (a 200 to a ``creates`` method becomes 201) and the OpenAPI
document (``public`` methods carry no bearer security, ``creates`` answers 201).  Read from a
FileDescriptorSet (``gen/petpro_api/petpro.binpb``), so ``make gen`` can build it from freshly generated
descriptors; a new route or policy is a proto change only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from petpro.policy import of_options

MOBILE_SERVICE = "petpro.mobile.v1.MobileService"
# Envoy transcodes the annotated (public catalog) reads of BookingService straight to it; its other
# methods have no REST rule and end at the gateway's 404 route.
BOOKING_SERVICE = "petpro.booking.v1.BookingService"
# AuthService: only GetJwks is annotated (GET /.well-known/jwks.json), so only it is routed.
AUTH_SERVICE = "petpro.auth.v1.AuthService"
# Clinic operations go straight to the services that own them; each authenticates its callers.
CLINIC_ADMIN_SERVICE = "petpro.booking.v1.ClinicAdminService"  # in booking_svc
CLINIC_STAFF_SERVICE = "petpro.auth.v1.ClinicStaffService"  # in auth_svc
# NotificationService: only its annotated methods (the owner's calendar feed and its token, a clinic's
# quiet hours) are routed; the inbox and preferences methods keyed by user_id are the BFF's.
NOTIFICATION_SERVICE = "petpro.notification.v1.NotificationService"  # in notif_worker
TRANSCODED_SERVICES: tuple[str, ...] = (
    MOBILE_SERVICE,
    BOOKING_SERVICE,
    AUTH_SERVICE,
    CLINIC_ADMIN_SERVICE,
    CLINIC_STAFF_SERVICE,
    NOTIFICATION_SERVICE,
)

_VAR = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class RestRoute:
    """One REST binding of an RPC and the RPC's declared policy."""

    service: str  # "petpro.mobile.v1.MobileService"
    method: str  # "CreateBooking"
    http_method: str  # "POST"
    http_path: str  # "/v1/bookings" (a google.api.http path template)
    public: bool = False
    idempotent: bool = False
    creates: bool = False
    max_wait_seconds: int = 0  # a long-poll: how long a call may wait for a change (its route waits longer)

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    def path_pattern(self) -> str:
        """The path template as an anchored Lua pattern (``{x}`` one segment, ``{x=**}`` the rest)."""
        out, pos = [], 0
        for m in _VAR.finditer(self.http_path):
            out.append(_lua_escape(self.http_path[pos : m.start()]))
            out.append(".+" if (m.group(2) or "").endswith("**") else "[^/]+")
            pos = m.end()
        out.append(_lua_escape(self.http_path[pos:]))
        return "^" + "".join(out) + "$"

    def path_regex(self) -> str:
        """The same template as a RE2 regex matching the whole path (Envoy's ``safe_regex``)."""
        out, pos = [], 0
        for m in _VAR.finditer(self.http_path):
            out.append(re.escape(self.http_path[pos : m.start()]))
            out.append(".+" if (m.group(2) or "").endswith("**") else "[^/]+")
            pos = m.end()
        out.append(re.escape(self.http_path[pos:]))
        return "".join(out)


def _lua_escape(text: str) -> str:
    return re.sub(r"([\^$()%.\[\]*+\-?])", r"%\1", text)


def route_table(
    fds: descriptor_pb2.FileDescriptorSet, services: Iterable[str] = TRANSCODED_SERVICES
) -> list[RestRoute]:
    """The REST routes of ``services`` (additional bindings too), in descriptor order."""
    wanted = list(services)
    found: set[str] = set()
    out: list[RestRoute] = []
    for f in fds.file:
        for svc in f.service:
            full = f"{f.package}.{svc.name}" if f.package else svc.name
            if full not in wanted:
                continue
            found.add(full)
            for m in svc.method:
                if not m.options.HasExtension(annotations_pb2.http):
                    continue
                policy = of_options(m.options)
                rule = m.options.Extensions[annotations_pb2.http]
                for r in (rule, *rule.additional_bindings):
                    kind = r.WhichOneof("pattern")
                    if kind is None:
                        continue
                    path = r.custom.path if kind == "custom" else getattr(r, kind)
                    verb = r.custom.kind if kind == "custom" else kind
                    out.append(
                        RestRoute(
                            full,
                            m.name,
                            verb.upper(),
                            path,
                            policy.public,
                            policy.idempotent,
                            policy.creates,
                            policy.max_wait_seconds,
                        )
                    )
    missing = set(wanted) - found
    if missing:
        raise ValueError(f"services not in the descriptor set: {', '.join(sorted(missing))}")
    return out


def created_patterns(routes: Sequence[RestRoute]) -> list[tuple[str, str]]:
    """(HTTP method, Lua path pattern) of the bindings whose method creates a resource."""
    return sorted({(r.http_method, r.path_pattern()) for r in routes if r.creates})


def protected_patterns(routes: Sequence[RestRoute]) -> list[tuple[str, str]]:
    """(HTTP method, Lua path pattern) of the bindings whose method is not declared public: the edge
    answers 401 there without a bearer token, before the transcoder reads the body."""
    return sorted({(r.http_method, r.path_pattern()) for r in routes if not r.public})


def protected_regexes(routes: Sequence[RestRoute]) -> list[tuple[str, str]]:
    """(HTTP method, RE2 path regex) of the same bindings: where Envoy's jwt_authn verifies the token."""
    return sorted({(r.http_method, r.path_regex()) for r in routes if not r.public})


__all__ = [
    "AUTH_SERVICE",
    "BOOKING_SERVICE",
    "CLINIC_ADMIN_SERVICE",
    "CLINIC_STAFF_SERVICE",
    "MOBILE_SERVICE",
    "NOTIFICATION_SERVICE",
    "TRANSCODED_SERVICES",
    "RestRoute",
    "created_patterns",
    "protected_patterns",
    "protected_regexes",
    "route_table",
]
