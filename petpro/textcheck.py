"""Checks every request string against the text rules, for all services in one place.

protovalidate checks what each field declares (``max_len``, ``uuid``, patterns …).  These rules
hold for every string field of every request, declared or not:

* no C0 control characters (U+0000-U+001F) and no DEL (U+007F): PostgreSQL rejects NUL in text,
  and the others end up in logs, emails and headers.  A field whose proto declares
  ``(petpro.common.v1.field).line_breaks = true`` may carry tab, LF and CR;
* valid UTF-8: a gRPC request whose string field holds invalid UTF-8 cannot even be decoded; the
  kit's interceptor decodes lazily and names the offending field (:func:`invalid_utf8_field`).

A violation is reported as a :class:`petpro.errors.FieldViolation` with the field path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import cache

from google.protobuf import descriptor as _d
from google.protobuf.message import Message

from petpro.errors import FieldViolation
from petpro_api.common.v1 import options_pb2

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_STRING = _d.FieldDescriptor.TYPE_STRING
_MESSAGE = _d.FieldDescriptor.TYPE_MESSAGE
_BYTES = _d.FieldDescriptor.TYPE_BYTES


def _repeated(f: _d.FieldDescriptor) -> bool:
    # protobuf ≥ 5 has is_repeated; label is deprecated there
    repeated = getattr(f, "is_repeated", None)
    return bool(repeated) if repeated is not None else getattr(f, "label") == f.LABEL_REPEATED  # noqa: B009


def _allows_line_breaks(f: _d.FieldDescriptor) -> bool:
    opts = f.GetOptions()
    return opts.HasExtension(options_pb2.field) and opts.Extensions[options_pb2.field].line_breaks


@cache
def _has_strings(desc: _d.Descriptor) -> bool:
    """Whether a message type can contain a string anywhere (skips e.g. Timestamp quickly)."""
    seen: set[str] = set()

    def walk(d: _d.Descriptor) -> bool:
        if d.full_name in seen:
            return False
        seen.add(d.full_name)
        for f in d.fields:
            if f.type == _STRING or (
                f.type == _MESSAGE and f.message_type is not None and walk(f.message_type)
            ):
                return True
        return False

    return walk(desc)


def _strings(msg: Message, prefix: str = "") -> Iterator[tuple[str, _d.FieldDescriptor, str]]:
    for f, value in msg.ListFields():
        path = f"{prefix}{f.name}"
        if f.type == _STRING:
            if f.message_type is None and _repeated(f):
                for i, v in enumerate(value):
                    yield f"{path}[{i}]", f, v
            else:
                yield path, f, value
        elif f.type == _MESSAGE and f.message_type is not None and _has_strings(f.message_type):
            if f.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if isinstance(k, str):
                        yield f"{path}[{k!r}]", f, k
                    if isinstance(v, str):
                        yield f"{path}[{k!r}]", f, v
                    elif isinstance(v, Message):
                        yield from _strings(v, f"{path}[{k!r}].")
            elif _repeated(f):
                for i, item in enumerate(value):
                    yield from _strings(item, f"{path}[{i}].")
            else:
                yield from _strings(value, f"{path}.")


def text_violations(msg: Message) -> list[FieldViolation]:
    """Control characters in any string of ``msg`` (recursively), one violation per field."""
    if not _has_strings(msg.DESCRIPTOR):
        return []
    out = []
    for path, f, value in _strings(msg):
        pattern = _CONTROL_EXCEPT_LINE_BREAKS if _allows_line_breaks(f) else _CONTROL
        m = pattern.search(value)
        if m:
            out.append(
                FieldViolation(
                    path,
                    f"must not contain control characters (found U+{ord(m.group()):04X})",
                    "CONTROL_CHARACTER",
                )
            )
    return out


# -- the same rules compiled once per message type (the kit's per-request check) ---------------------

_STR, _STR_LIST, _MSG, _MSG_LIST, _MAP = range(5)
_PLANS: dict[_d.Descriptor, list[tuple[str, int, object]]] = {}


def _pattern(f: _d.FieldDescriptor) -> re.Pattern[str]:
    return _CONTROL_EXCEPT_LINE_BREAKS if _allows_line_breaks(f) else _CONTROL


def _plan(desc: _d.Descriptor) -> list[tuple[str, int, object]]:
    """(field name, kind, pattern or sub-type) of each field of ``desc`` that can hold a string, in
    field-number order (the order :func:`text_violations` reports in).  Filled in place after being
    stored, so a recursive message type refers to its own plan."""
    plan = _PLANS.get(desc)
    if plan is not None:
        return plan
    plan = _PLANS[desc] = []
    for f in sorted(desc.fields, key=lambda f: f.number):
        if f.type == _STRING:
            plan.append((f.name, _STR_LIST if _repeated(f) else _STR, _pattern(f)))
        elif f.type == _MESSAGE and f.message_type is not None and _has_strings(f.message_type):
            if f.message_type.GetOptions().map_entry:
                value = f.message_type.fields_by_name["value"]
                sub = value.message_type if value.type == _MESSAGE else None
                plan.append((f.name, _MAP, (_pattern(f), sub)))
            else:
                plan.append((f.name, _MSG_LIST if _repeated(f) else _MSG, f.message_type))
    return plan


def _violation(path: str, m: re.Match[str]) -> FieldViolation:
    return FieldViolation(
        path, f"must not contain control characters (found U+{ord(m.group()):04X})", "CONTROL_CHARACTER"
    )


def _walk(msg: Message, plan: list[tuple[str, int, object]], prefix: str, out: list[FieldViolation]) -> None:
    for name, kind, extra in plan:
        if kind == _STR:
            value = getattr(msg, name)
            if value:
                m = extra.search(value)  # type: ignore[attr-defined]
                if m:
                    out.append(_violation(prefix + name, m))
        elif kind == _STR_LIST:
            for i, value in enumerate(getattr(msg, name)):
                m = extra.search(value)  # type: ignore[attr-defined]
                if m:
                    out.append(_violation(f"{prefix}{name}[{i}]", m))
        elif kind == _MSG:
            if msg.HasField(name):
                _walk(getattr(msg, name), _plan(extra), f"{prefix}{name}.", out)  # type: ignore[arg-type]
        elif kind == _MSG_LIST:
            for i, item in enumerate(getattr(msg, name)):
                _walk(item, _plan(extra), f"{prefix}{name}[{i}].", out)  # type: ignore[arg-type]
        else:
            pattern: re.Pattern[str]
            sub: _d.Descriptor | None
            pattern, sub = extra  # type: ignore[misc]
            for k, v in getattr(msg, name).items():
                path = f"{prefix}{name}[{k!r}]"
                if isinstance(k, str):
                    m = pattern.search(k)
                    if m:
                        out.append(_violation(path, m))
                if isinstance(v, str):
                    m = pattern.search(v)
                    if m:
                        out.append(_violation(path, m))
                elif sub is not None:
                    _walk(v, _plan(sub), f"{path}.", out)


def text_check(desc: _d.Descriptor) -> Callable[[Message], list[FieldViolation]] | None:
    """:func:`text_violations` for messages of type ``desc``, its plan made once; None when the
    type can hold no string (nothing to check)."""
    if not _has_strings(desc):
        return None
    plan = _plan(desc)

    def check(msg: Message) -> list[FieldViolation]:
        out: list[FieldViolation] = []
        _walk(msg, plan, "", out)
        return out

    return check


# -- invalid UTF-8: find the field in the wire format ----------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def invalid_utf8_field(desc: _d.Descriptor, data: bytes, prefix: str = "", depth: int = 0) -> str | None:
    """The path of the first string field in ``data`` (wire format of ``desc``) that is not valid
    UTF-8, or None.  Used only after a parse failed, to name the field in the error."""
    if depth > 64:
        return None
    i, counts = 0, dict[int, int]()
    try:
        while i < len(data):
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(data, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                n, i = _varint(data, i)
                chunk, i = data[i : i + n], i + n
                f = desc.fields_by_number.get(number)
                if f is None:
                    continue
                index = counts.get(number, 0)
                counts[number] = index + 1
                path = f"{prefix}{f.name}" + (f"[{index}]" if _repeated(f) and f.message_type is None else "")
                if f.type == _STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return path
                elif f.type == _MESSAGE and f.message_type is not None:
                    sub_prefix = (
                        f"{path}[{index}]."
                        if _repeated(f) and not f.message_type.GetOptions().map_entry
                        else f"{path}."
                    )
                    found = invalid_utf8_field(f.message_type, chunk, sub_prefix, depth + 1)
                    if found:
                        return found
            else:
                return None
    except ValueError:
        return None
    return None


__all__ = ["FieldViolation", "invalid_utf8_field", "text_check", "text_violations"]
