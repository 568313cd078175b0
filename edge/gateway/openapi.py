"""OpenAPI 3.1 document of the public REST API, generated from the protos' descriptor set.

The REST API *is* the ``google.api.http`` annotations of ``petpro.mobile.v1.MobileService`` as Envoy's
gRPC-JSON transcoder serves them, so this module reads the same descriptors
(``gen/petpro_api/petpro.binpb``, with source info for the comments) and follows the transcoder's rules:

* path parameters from the URL template; with ``body: "*"`` the rest of the request message is the
  JSON body, with no body every remaining field is a query parameter (nested messages flattened as
  ``parent.child``);
* proto3 JSON mapping with proto field names (``preserve_proto_field_names``): int64 → string,
  enums → their names, Timestamp → RFC 3339 string, bytes → base64, repeated → array, map → object;
* buf.validate rules become JSON-Schema constraints (lengths, patterns, formats, ranges, required),
  ``google.api.field_behavior`` OUTPUT_ONLY → ``readOnly``;
* errors are ``application/problem+json`` (:data:`PROBLEM_SCHEMA`), as the edge's Lua filter renders them.

Nothing here imports Envoy or gRPC: it is pure descriptor → dict, run by ``make gen`` (the edge
serves ``gen/petpro_api/openapi.json``).  The document speaks to API users: its introduction is the leading
comment of MobileService only (the internal services' comments are for their gRPC callers), and
implementation notes in the protos belong in detached comments, which never reach it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import descriptor_pb2

from buf.validate import validate_pb2  # generated from protovalidate's embedded descriptor (gen/buf/validate)
from edge.gateway.outputs import descriptor_path
from edge.gateway.routes import MOBILE_SERVICE, TRANSCODED_SERVICES, RestRoute, route_table

# Headers a method reads from gRPC metadata (the transcoder forwards HTTP headers as metadata).
HEADER_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "CreateBooking": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Client-chosen key (1-255 characters), strongly recommended. A retry with the "
            "same key and body returns the first answer (no second hold or payment session); the same "
            "key with a different body is rejected with 409. Without it every request is a new booking.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ],
}

PROBLEM_CONTENT_TYPE = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details, extended with a stable machine-readable reason and "
    "field violations.",
    "required": ["type", "title", "status", "reason"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "Identifies the kind of problem."},
        "title": {"type": "string", "description": "Short summary of the HTTP status."},
        "status": {"type": "integer", "description": "HTTP status code."},
        "detail": {"type": "string", "description": "Explanation of this occurrence."},
        "instance": {"type": "string", "description": "Path of the request."},
        "reason": {
            "type": "string",
            "description": "Stable machine-readable UPPER_SNAKE code (google.rpc.ErrorInfo.reason), "
            "e.g. SLOT_UNAVAILABLE, INVALID_ARGUMENT, RATE_LIMITED.",
        },
        "domain": {
            "type": "string",
            "description": "Where the reason is defined, `<service>.petpro.dev` (google.rpc.ErrorInfo.domain), "
            "e.g. booking.petpro.dev.",
        },
        "violations": {
            "type": "array",
            "description": "Invalid fields of the request (google.rpc.BadRequest).",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "description": "Path of the field, e.g. `slot`."},
                    "description": {"type": "string"},
                    "reason": {"type": "string", "description": "Rule that failed, e.g. `string.uuid`."},
                },
            },
        },
        "request_id": {"type": "string", "description": "The request's `x-request-id`."},
    },
}

_ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    # component name: (status, description)
    "BadRequest": (
        "400",
        "Invalid request: malformed JSON, unknown query parameter or field "
        "violations (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE).",
    ),
    "Unauthorized": ("401", "Missing, invalid or expired access token (UNAUTHENTICATED)."),
    "Forbidden": ("403", "The caller may not access this resource (PERMISSION_DENIED)."),
    "NotFound": ("404", "No such resource (NOT_FOUND)."),
    "Conflict": ("409", "Conflict with the current state (ALREADY_EXISTS, ABORTED)."),
    "PayloadTooLarge": ("413", "Request body over the size limit (64 KiB)."),
    "TooManyRequests": ("429", "Rate limited (RESOURCE_EXHAUSTED)."),
    "Unavailable": ("503", "A service is temporarily unavailable; retry later (UNAVAILABLE)."),
    "Error": ("default", "Any other error."),
}

# proto3 JSON mapping of scalar field types
_T = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "Duration in seconds with an `s` suffix, e.g. `1.5s`.",
    },
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "minimum": 0},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "format": "byte"},
}

_PATH_VAR = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")


def default_descriptor_path() -> Path:
    """``gen/petpro_api/petpro.binpb`` (FileDescriptorSet with imports and source info), next to the generated
    ``petpro.<domain>.v1`` packages."""
    return descriptor_path()


# --------------------------------------------------------------------------------------------------
# descriptor index
# --------------------------------------------------------------------------------------------------


@dataclass
class _Message:
    full_name: str
    proto: descriptor_pb2.DescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    path: tuple[int, ...]


@dataclass
class _Enum:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    path: tuple[int, ...]


@dataclass
class _Index:
    messages: dict[str, _Message] = field(default_factory=dict)
    enums: dict[str, _Enum] = field(default_factory=dict)
    comments: dict[tuple[str, tuple[int, ...]], str] = field(default_factory=dict)

    @classmethod
    def of(cls, fds: descriptor_pb2.FileDescriptorSet) -> _Index:
        idx = cls()
        for f in fds.file:
            prefix = f".{f.package}" if f.package else ""
            for i, m in enumerate(f.message_type):
                idx._add_message(f, prefix, m, (4, i))
            for i, e in enumerate(f.enum_type):
                name = f"{prefix}.{e.name}"
                idx.enums[name] = _Enum(name.lstrip("."), e, f, (5, i))
            for loc in f.source_code_info.location:
                text = _clean_comment(loc.leading_comments or loc.trailing_comments)
                if text:
                    idx.comments[(f.name, tuple(loc.path))] = text
        return idx

    def _add_message(self, f: Any, prefix: str, m: Any, path: tuple[int, ...]) -> None:
        name = f"{prefix}.{m.name}"
        self.messages[name] = _Message(name.lstrip("."), m, f, path)
        for i, nested in enumerate(m.nested_type):
            self._add_message(f, name, nested, (*path, 3, i))
        for i, e in enumerate(m.enum_type):
            ename = f"{name}.{e.name}"
            self.enums[ename] = _Enum(ename.lstrip("."), e, f, (*path, 4, i))

    def comment(self, file: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]) -> str:
        return self.comments.get((file.name, path), "")


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    lines = [line for line in lines if not line.startswith("buf:lint:ignore")]  # buf's, not the API's
    return "\n".join(line.rstrip() for line in lines).strip()


def _summary(description: str) -> str:
    first = description.split("\n\n")[0].replace("\n", " ").strip()
    m = re.match(r"(.+?\.)(\s|$)", first)
    return (m.group(1) if m else first)[:120]


# --------------------------------------------------------------------------------------------------
# schemas
# --------------------------------------------------------------------------------------------------


class _Schemas:
    def __init__(self, index: _Index, roots: Iterable[str], request_roots: Iterable[str] = ()) -> None:
        self.index = index
        self.components: dict[str, dict[str, Any]] = {}
        self.names = self._component_names(roots)
        # a message both requests and responses carry has two schemas: ``<Name>`` as answered (every
        # field that always comes back required) and ``<Name>Input`` as sent (the validation rules)
        self.in_requests = self._reachable(request_roots)
        self.in_responses = self._reachable(set(roots) - set(request_roots))
        taken = set(self.names.values())
        assert not {f"{short}Input" for short in taken} & taken, (
            "a <Name>Input schema would name two messages"
        )

    # ---- naming: short names where unambiguous, full names otherwise
    def _reachable(self, roots: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = [r if r.startswith(".") else f".{r}" for r in roots]
        while stack:
            name = stack.pop()
            if name in seen or name.lstrip(".") in _WELL_KNOWN:
                continue
            seen.add(name)
            msg = self.index.messages.get(name)
            if msg is None:
                continue
            for f in msg.proto.field:
                if f.type in (_T.TYPE_MESSAGE, _T.TYPE_ENUM):
                    stack.append(f.type_name)
        return seen

    def _component_names(self, roots: Iterable[str]) -> dict[str, str]:
        reachable = sorted(self._reachable(roots))
        short: dict[str, list[str]] = {}
        for name in reachable:
            pkg_relative = self._relative(name)
            short.setdefault(pkg_relative, []).append(name)
        out = {}
        for rel, names in short.items():
            for name in names:
                out[name] = rel if len(names) == 1 else name.lstrip(".")
        return out

    def _relative(self, name: str) -> str:
        item = self.index.messages.get(name) or self.index.enums.get(name)
        package = item.file.package if item else ""
        bare = name.lstrip(".")
        return bare[len(package) + 1 :] if package and bare.startswith(package + ".") else bare

    def ref(self, type_name: str, *, request: bool = False) -> dict[str, Any]:
        """A reference to the schema of a message or enum, as a request sends it (``request``) or a
        response answers it."""
        bare = type_name.lstrip(".")
        if bare in _WELL_KNOWN:
            return dict(_WELL_KNOWN[bare])
        full = f".{bare}"
        name = self.names.get(type_name) or self.names.get(full) or bare
        enum = full in self.index.enums
        if not enum:
            if full in self.in_requests and full in self.in_responses:
                name = f"{name}Input" if request else name
            else:  # one schema for a message only requests (or only responses) carry, as they carry it
                request = full in self.in_requests
        if name not in self.components:
            self.components[name] = {}  # placeholder against recursion
            if enum:
                self.components[name] = self._enum(self.index.enums[full])
            else:
                self.components[name] = self.message(self.index.messages[full], request=request)
        return {"$ref": f"#/components/schemas/{name}"}

    def _enum(self, e: _Enum) -> dict[str, Any]:
        desc = self.index.comment(e.file, e.path)
        values, commented = [], False
        for i, v in enumerate(e.proto.value):
            c = self.index.comment(e.file, (*e.path, 2, i)).replace("\n", " ")
            commented = commented or bool(c)
            values.append(f"- `{v.name}`" + (f": {c}" if c else ""))
        text = "\n".join(filter(None, [desc, "\n".join(values) if commented else ""]))
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in e.proto.value]}
        if text:
            schema["description"] = text
        return schema

    def message(self, msg: _Message, *, exclude: Iterable[str] = (), request: bool = False) -> dict[str, Any]:
        """The message's schema as a request sends it (``request``: ``required`` from the validation
        rules) or as a response answers it (``required``: every field that always comes back; the
        transcoder prints the fields without presence even at their defaults, see
        :func:`_always_printed`).  Output-only fields are ``readOnly``."""
        excluded = set(exclude)
        props: dict[str, Any] = {}
        required: list[str] = []
        for i, f in enumerate(msg.proto.field):
            if f.name in excluded:
                continue
            props[f.name] = self.field(msg, i, request=request)
            if _is_required(f) if request else _always_printed(f):
                required.append(f.name)
        schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            schema["required"] = required
        desc = self.index.comment(msg.file, msg.path)
        oneofs = _real_oneofs(msg.proto)
        if oneofs:
            desc = "\n\n".join(filter(None, [desc, *(f"At most one of: {', '.join(fs)}." for fs in oneofs)]))
        if desc:
            schema["description"] = desc
        return schema

    def field(self, msg: _Message, i: int, *, request: bool = False) -> dict[str, Any]:
        f = msg.proto.field[i]
        map_entry = self._map_entry(f)
        if map_entry is not None:
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self._single(map_entry.proto.field[1], request),
            }
        elif f.label == _T.LABEL_REPEATED:
            schema = {"type": "array", "items": self._single(f, request)}
            _apply_repeated_rules(schema, f)
        else:
            schema = self._single(f, request)
        desc = self.index.comment(msg.file, (*msg.path, 2, i))
        if desc:
            schema["description"] = desc
        behaviors = _field_behavior(f)
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            schema["writeOnly"] = True
        return schema

    def _single(self, f: descriptor_pb2.FieldDescriptorProto, request: bool = False) -> dict[str, Any]:
        if f.type in (_T.TYPE_MESSAGE, _T.TYPE_GROUP, _T.TYPE_ENUM):
            return self.ref(f.type_name, request=request)
        schema = dict(_SCALARS[f.type])
        _apply_scalar_rules(schema, f)
        return schema

    def _map_entry(self, f: descriptor_pb2.FieldDescriptorProto) -> _Message | None:
        if f.type != _T.TYPE_MESSAGE or f.label != _T.LABEL_REPEATED:
            return None
        m = self.index.messages.get(f.type_name)
        return m if m is not None and m.proto.options.map_entry else None

    def query_parameters(
        self, msg: _Message, exclude: set[str], prefix: str = "", depth: int = 0
    ) -> list[dict[str, Any]]:
        """grpc-gateway's query mapping: scalars, enums, repeated scalars; nested messages by
        dotted name; maps are not addressable."""
        out: list[dict[str, Any]] = []
        for i, f in enumerate(msg.proto.field):
            name = f"{prefix}{f.name}"
            if name in exclude or self._map_entry(f) is not None:
                continue
            bare = f.type_name.lstrip(".")
            if f.type == _T.TYPE_MESSAGE and bare not in _WELL_KNOWN:
                if depth < 3 and f.label != _T.LABEL_REPEATED:
                    out += self.query_parameters(
                        self.index.messages[f.type_name], exclude, f"{name}.", depth + 1
                    )
                continue
            schema = self.field(msg, i, request=True)
            description = schema.pop("description", "")
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": _is_required(f),
                "schema": schema,
            }
            if description:
                param["description"] = description
            if f.label == _T.LABEL_REPEATED:
                param["style"] = "form"
                param["explode"] = True
            out.append(param)
        return out


def _always_printed(f: descriptor_pb2.FieldDescriptorProto) -> bool:
    """Envoy's transcoder prints the field even at its default: no presence (not a message, not
    ``optional``, in no oneof), or repeated / a map (printed as ``[]`` / ``{}``)."""
    if f.label == _T.LABEL_REPEATED:
        return True
    if f.type in (_T.TYPE_MESSAGE, _T.TYPE_GROUP) or f.proto3_optional:
        return False
    return not f.HasField("oneof_index")


def _field_behavior(f: descriptor_pb2.FieldDescriptorProto) -> list[int]:
    return list(f.options.Extensions[field_behavior_pb2.field_behavior])


def _rules(f: descriptor_pb2.FieldDescriptorProto) -> Any:
    if not f.options.HasExtension(validate_pb2.field):
        return None
    return f.options.Extensions[validate_pb2.field]


def _is_required(f: descriptor_pb2.FieldDescriptorProto) -> bool:
    if field_behavior_pb2.REQUIRED in _field_behavior(f):
        return True
    rules = _rules(f)
    if rules is None:
        return False
    if rules.required:
        return True
    if rules.ignore == validate_pb2.IGNORE_IF_ZERO_VALUE:
        return False
    if rules.HasField("string"):
        return _string_rules_reject_empty(rules.string)
    return rules.HasField("enum") and 0 in rules.enum.not_in


def _string_rules_reject_empty(s: Any) -> bool:
    """The rules make "" invalid, so the field must be sent (proto3 JSON: "" is the same as absent)."""
    if s.min_len > 0 or (s.HasField("len") and s.len > 0):
        return True
    if s.HasField("const"):
        return s.const != ""
    allowed = list(getattr(s, "in"))
    if allowed:
        return "" not in allowed
    well_known = s.WhichOneof("well_known")
    if well_known and getattr(s, well_known) is True:
        return True
    if s.HasField("pattern"):
        try:
            return re.search(s.pattern, "") is None
        except re.error:
            return False
    return False


def _real_oneofs(m: descriptor_pb2.DescriptorProto) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            groups.setdefault(f.oneof_index, []).append(f.name)
    return [groups[k] for k in sorted(groups)]


def _apply_scalar_rules(schema: dict[str, Any], f: descriptor_pb2.FieldDescriptorProto) -> None:
    rules = _rules(f)
    if rules is None:
        return
    kind = rules.WhichOneof("type")
    if kind == "string":
        s = rules.string
        if s.HasField("min_len"):
            schema["minLength"] = s.min_len
        if s.HasField("max_len"):
            schema["maxLength"] = s.max_len
        if s.HasField("len"):
            schema["minLength"] = schema["maxLength"] = s.len
        if s.HasField("pattern"):
            schema["pattern"] = s.pattern
        if s.HasField("const"):
            schema["const"] = s.const
        if len(getattr(s, "in")):
            schema["enum"] = list(getattr(s, "in"))
        well_known = s.WhichOneof("well_known")
        formats = {
            "email": "email",
            "uuid": "uuid",
            "uri": "uri",
            "uri_ref": "uri-reference",
            "hostname": "hostname",
            "ipv4": "ipv4",
            "ipv6": "ipv6",
        }
        if well_known in formats and getattr(s, well_known):
            schema["format"] = formats[well_known]
        if rules.ignore == validate_pb2.IGNORE_IF_ZERO_VALUE:
            # the rules apply to a non-empty value only: "" (unset) is valid, in requests and responses
            shape = {k: schema.pop(k) for k in ("minLength", "pattern", "format") if k in schema}
            if shape:  # each branch typed, so generated clients see a string, not ``unknown``
                schema["anyOf"] = [{"type": "string", "const": ""}, {"type": "string", **shape}]
    elif kind in ("int32", "sint32", "sfixed32", "uint32", "fixed32", "double", "float"):
        r = getattr(rules, kind)
        for attr, key in (
            ("gte", "minimum"),
            ("gt", "exclusiveMinimum"),
            ("lte", "maximum"),
            ("lt", "exclusiveMaximum"),
            ("const", "const"),
        ):
            if r.HasField(attr):
                schema[key] = getattr(r, attr)


def _apply_repeated_rules(schema: dict[str, Any], f: descriptor_pb2.FieldDescriptorProto) -> None:
    rules = _rules(f)
    if rules is None or rules.WhichOneof("type") != "repeated":
        return
    if rules.repeated.HasField("min_items"):
        schema["minItems"] = rules.repeated.min_items
    if rules.repeated.HasField("max_items"):
        schema["maxItems"] = rules.repeated.max_items
    if rules.repeated.unique:
        schema["uniqueItems"] = True


# --------------------------------------------------------------------------------------------------
# the document
# --------------------------------------------------------------------------------------------------


def _tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    if parts and re.fullmatch(r"v\d+\w*", parts[0]):
        parts = parts[1:]
    return parts[0].partition(":")[0] if parts else "default"  # /v1/me:export is tagged "me"


def _error_responses(*names: str) -> dict[str, Any]:
    return {_ERROR_RESPONSES[n][0]: {"$ref": f"#/components/responses/{n}"} for n in names}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_openapi(
    descriptor_set_bytes: bytes,
    *,
    services: Iterable[str] = TRANSCODED_SERVICES,
    routes: Iterable[RestRoute] | None = None,
    header_parameters: dict[str, list[dict[str, Any]]] | None = None,
    description_service: str = MOBILE_SERVICE,
    title: str = "PetPro API",
    version: str = "v1",
    server_url: str | None = None,
    include_http_app: bool = True,
) -> dict[str, Any]:
    """OpenAPI 3.1 document for the ``google.api.http`` rules of ``services``.  Which operations
    need a bearer token and which answer 201 comes from the method policy in ``routes``
    (:func:`edge.gateway.routes.route_table` of the same descriptors by default)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_bytes)
    index = _Index.of(fds)
    table = {(r.grpc_path, r.http_method, r.http_path): r for r in (routes or route_table(fds, services))}
    headers = HEADER_PARAMETERS if header_parameters is None else header_parameters
    wanted = list(services)

    found = []
    for f in fds.file:
        for si, svc in enumerate(f.service):
            full = f"{f.package}.{svc.name}" if f.package else svc.name
            if full in wanted:
                found.append((full, f, si, svc))
    missing = set(wanted) - {s[0] for s in found}
    if missing:
        raise ValueError(f"services not in the descriptor set: {', '.join(sorted(missing))}")

    # the messages of the routed methods only: a service's other methods (AuthService's Login next to
    # its JWKS route) would make two components of one short name (``petpro.mobile.v1.LoginRequest``)
    routed = [m for _, _, _, svc in found for m in svc.method if m.options.HasExtension(annotations_pb2.http)]
    request_roots = [m.input_type for m in routed]
    roots = request_roots + [m.output_type for m in routed]
    schemas = _Schemas(index, roots, request_roots)
    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    descriptions = []

    for full, f, si, svc in found:
        svc_doc = index.comment(f, (6, si))
        if svc_doc and full == description_service:
            descriptions.append(svc_doc)
        for mi, method in enumerate(svc.method):
            if not method.options.HasExtension(annotations_pb2.http):
                continue
            rule = method.options.Extensions[annotations_pb2.http]
            doc = index.comment(f, (6, si, 2, mi))
            for binding in (rule, *rule.additional_bindings):
                kind = binding.WhichOneof("pattern")
                if kind is None:
                    continue
                template = binding.custom.path if kind == "custom" else getattr(binding, kind)
                verb = (binding.custom.kind if kind == "custom" else kind).lower()
                route = table[(f"/{full}/{method.name}", verb.upper(), template)]
                op = _operation(
                    schemas,
                    index,
                    full,
                    method,
                    binding,
                    template,
                    verb,
                    doc,
                    secured=not route.public,
                    created=route.creates,
                    headers=headers.get(method.name, []),
                )
                oas_path = _oas_path(template)
                paths.setdefault(oas_path, {})[verb] = op
                if op["tags"][0] not in tags:
                    tags.append(op["tags"][0])

    if include_http_app:
        for p, item in _http_app_paths().items():
            paths.setdefault(p, {}).update(item)
            for op in item.values():
                if op["tags"][0] not in tags:
                    tags.append(op["tags"][0])

    components_schemas = dict(sorted(schemas.components.items()))
    components_schemas["Problem"] = PROBLEM_SCHEMA
    components_schemas["WebhookResult"] = _WEBHOOK_RESULT
    description = "\n\n".join(descriptions) or title
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": server_url or "/"}],
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": components_schemas,
            "responses": {
                name: {
                    "description": desc,
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
                for name, (_, desc) in _ERROR_RESPONSES.items()
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`access_token` from POST /v1/auth/login.",
                }
            },
        },
    }
    return document


def _operation(
    schemas: _Schemas,
    index: _Index,
    service: str,
    method: descriptor_pb2.MethodDescriptorProto,
    binding: Any,
    template: str,
    verb: str,
    doc: str,
    *,
    secured: bool,
    created: bool,
    headers: list[dict[str, Any]],
) -> dict[str, Any]:
    request = index.messages[method.input_type]
    path_vars = [m.group(1) for m in _PATH_VAR.finditer(template)]
    names = _path_names(path_vars)
    params: list[dict[str, Any]] = []
    for var in path_vars:
        param = {
            "name": names[var],
            "in": "path",
            "required": True,
            **_path_param_schema(schemas, request, var),
        }
        if names[var] != var:
            param["x-proto-field"] = var  # the request field the segment binds (the URL is the same)
        params.append(param)
    params += [dict(h) for h in headers]

    op: dict[str, Any] = {
        "operationId": method.name,
        "tags": [_tag(template)],
        "summary": _summary(doc) if doc else method.name,
    }
    if doc:
        op["description"] = doc

    top_path_fields = {v.split(".")[0] for v in path_vars}
    body = binding.body
    if body == "*":
        if path_vars:
            name = f"{schemas.names.get(method.input_type, method.input_type.split('.')[-1])}Body"
            schemas.components[name] = schemas.message(request, exclude=top_path_fields, request=True)
            body_schema = {"$ref": f"#/components/schemas/{name}"}
        else:
            body_schema = schemas.ref(method.input_type, request=True)
        op["requestBody"] = {"required": True, "content": _json_content(body_schema)}
    elif body:
        i = next(i for i, f in enumerate(request.proto.field) if f.name == body)
        op["requestBody"] = {
            "required": True,
            "content": _json_content(schemas.field(request, i, request=True)),
        }
        params += schemas.query_parameters(request, set(path_vars) | {body})
    else:
        params += schemas.query_parameters(request, set(path_vars))
    if params:
        op["parameters"] = params

    response = index.messages[method.output_type]
    if binding.response_body:
        i = next(i for i, f in enumerate(response.proto.field) if f.name == binding.response_body)
        response_schema = schemas.field(response, i)
    else:
        response_schema = schemas.ref(method.output_type)
    ok = "201" if created else "200"
    # google.api.HttpBody: the transcoder answers its data with its content type (a calendar feed...)
    raw = method.output_type == ".google.api.HttpBody"
    content = {"*/*": {"schema": {"type": "string", "format": "binary"}}} if raw else None
    responses: dict[str, Any] = {
        ok: {
            "description": "Created." if created else "OK.",
            "content": content or _json_content(response_schema),
        }
    }
    errors = ["BadRequest"]
    if secured:
        errors += ["Unauthorized", "Forbidden"]
    if path_vars or secured:
        errors.append("NotFound")
    if verb in ("post", "put", "patch", "delete"):
        errors.append("Conflict")
    if "requestBody" in op:
        errors.append("PayloadTooLarge")
    errors += ["TooManyRequests", "Unavailable", "Error"]
    responses.update(_error_responses(*errors))
    op["responses"] = responses
    op["security"] = [{"bearerAuth": []}] if secured else []
    op["x-grpc-method"] = f"/{service}/{method.name}"
    return op


def _path_names(path_vars: list[str]) -> dict[str, str]:
    """Plain OpenAPI names for a template's variables: ``clinic.clinic_id`` → ``clinic_id`` (the last
    field; ``clinic_date`` style when two would clash).  Only the template's names change: the URLs
    are the same, so Envoy's transcoder, which reads the proto's rule, needs no mapping."""
    last = [v.rsplit(".", 1)[-1] for v in path_vars]
    return {
        v: (n if last.count(n) == 1 else v.replace(".", "_")) for v, n in zip(path_vars, last, strict=True)
    }


def _oas_path(template: str) -> str:
    """The OpenAPI path of a ``google.api.http`` template, with plain variable names."""
    names = _path_names([m.group(1) for m in _PATH_VAR.finditer(template)])
    return _PATH_VAR.sub(lambda m: "{" + names[m.group(1)] + "}", template)


def _path_param_schema(schemas: _Schemas, request: _Message, var: str) -> dict[str, Any]:
    msg = request
    parts = var.split(".")
    for depth, part in enumerate(parts):
        i = next((i for i, f in enumerate(msg.proto.field) if f.name == part), None)
        if i is None:
            return {"schema": {"type": "string"}}
        if depth == len(parts) - 1:
            schema = schemas.field(msg, i, request=True)
            description = schema.pop("description", "")
            return {"schema": schema, **({"description": description} if description else {})}
        msg = schemas.index.messages[msg.proto.field[i].type_name]
    return {"schema": {"type": "string"}}


_WEBHOOK_RESULT: dict[str, Any] = {
    "type": "object",
    "description": "What a verified webhook event led to.",
    "properties": {
        "received": {"type": "boolean"},
        "event_id": {"type": "string"},
        "event_type": {"type": "string"},
        "duplicate": {"type": "boolean", "description": "The event id was seen before."},
        "outcome": {
            "type": "string",
            "enum": ["confirmed", "refunded", "ignored"],
            "description": "`confirmed`: the booking is committed; `refunded`: the slot was gone, "
            "the payment was refunded; `ignored`: nothing to do for this event.",
        },
        "booking_id": {"type": "string"},
        "payment_id": {"type": "string"},
    },
}


def _http_app_paths() -> dict[str, dict[str, Any]]:
    problem = {"content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    return {
        "/webhooks/stripe": {
            "post": {
                "operationId": "StripeWebhook",
                "tags": ["webhooks"],
                "summary": "Stripe webhook endpoint (signed events).",
                "description": "Receives Stripe events. The raw body is verified against the "
                "`Stripe-Signature` header (HMAC-SHA256, 300 s tolerance); a succeeded checkout confirms "
                "the booking, or refunds the payment if the slot is gone. Answers 2xx only once the "
                "booking is committed (or the payment refunded), so Stripe retries anything else.",
                "parameters": [
                    {
                        "name": "Stripe-Signature",
                        "in": "header",
                        "required": True,
                        "description": "`t=<unix time>,v1=<hex HMAC-SHA256>`.",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "description": "A Stripe event.",
                                "additionalProperties": True,
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Handled.",
                        "content": _json_content({"$ref": "#/components/schemas/WebhookResult"}),
                    },
                    "400": {"description": "Missing, forged or stale signature; malformed event.", **problem},
                    "503": {"description": "Could not be handled now; the sender should retry.", **problem},
                },
                "security": [],
            }
        },
        "/healthz": {
            "get": {
                "operationId": "Healthz",
                "tags": ["meta"],
                "summary": "Liveness of the API.",
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": _json_content(
                            {"type": "object", "properties": {"status": {"type": "string"}}}
                        ),
                    }
                },
                "security": [],
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "OpenApi",
                "tags": ["meta"],
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": _json_content({"type": "object"}),
                    }
                },
                "security": [],
            }
        },
    }
