"""Stripe's form encoding (``line_items[0][price_data][unit_amount]=2500``) and typed parameter access.

The SDK sends v1 parameters as ``application/x-www-form-urlencoded`` pairs with bracketed keys: dicts as
``key[sub]``, lists as ``key[0]`` (``key[]`` from older clients), booleans as ``true``/``false``.
:func:`decode_pairs` rebuilds the nested structure; :class:`Params` reads it with Stripe's error
messages, naming each parameter the way Stripe does (``line_items[0][quantity]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from petpro_dev.stripe_sandbox.errors import (
    StripeError,
    invalid_integer,
    invalid_param,
    parameter_missing,
    parameter_unknown,
)

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
MAX_DEPTH = 8


def parse_urlencoded(raw: bytes | str) -> list[tuple[str, str]]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return parse_qsl(text, keep_blank_values=True)


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nested dicts/lists from bracketed keys.  Dicts whose keys are all integers become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if not m:
            raise invalid_param(key, f"Invalid parameter name: {key}", code="parameter_unknown")
        segments = [m.group(1), *_SEGMENT.findall(m.group(2))]
        if len(segments) > MAX_DEPTH:
            raise invalid_param(key, f"Parameter nesting too deep: {key}", code="parameter_unknown")
        node: dict[str, Any] = root
        for i, seg in enumerate(segments[:-1]):
            nxt = segments[i + 1]
            if seg == "":  # a[][b]: append a new dict
                raise invalid_param(key, f"Invalid array parameter: {key}", code="parameter_unknown")
            child = node.get(seg)
            if child is None:
                child = [] if nxt == "" else {}
                node[seg] = child
            if nxt == "":
                if not isinstance(child, list) or i + 1 != len(segments) - 1:
                    raise invalid_param(key, f"Invalid array parameter: {key}", code="parameter_unknown")
                break
            if not isinstance(child, dict):
                raise invalid_param(key, f"Invalid hash: {key}", code="parameter_unknown")
            node = child
        last = segments[-1]
        if last == "":
            arr = node[segments[-2]]
            arr.append(value)
        elif isinstance(node.get(last), (dict, list)):
            raise invalid_param(key, f"Invalid hash: {key}", code="parameter_unknown")
        else:
            node[last] = value
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(value, list):
        return [_listify(v) for v in value]
    return value


class Params:
    """Read-only view of decoded parameters; ``name`` is the path used in error messages."""

    def __init__(self, data: Mapping[str, Any], name: str = "") -> None:
        self.data = data
        self.name = name

    def path(self, key: str) -> str:
        return f"{self.name}[{key}]" if self.name else key

    def check_known(self, allowed: Iterable[str]) -> None:
        allowed_set = set(allowed)
        for key in self.data:
            if key not in allowed_set:
                raise parameter_unknown(self.path(key))

    def has(self, key: str) -> bool:
        value = self.data.get(key)
        return value is not None and value != ""

    def text(self, key: str, *, required: bool = False, choices: Iterable[str] | None = None) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise parameter_missing(self.path(key))
            return None
        if not isinstance(value, str):
            raise invalid_param(
                self.path(key), f"Invalid string: {self.path(key)}", code="parameter_invalid_string"
            )
        if choices is not None:
            options = list(choices)
            if value not in options:
                raise invalid_param(
                    self.path(key),
                    f"Invalid {self.path(key)}: must be one of {', '.join(options)}",
                    code="parameter_invalid_string",
                )
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        raw = self.text(key, required=required)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise invalid_integer(self.path(key), raw) from None
        if minimum is not None and value < minimum:
            if minimum == 1:
                raise StripeError(
                    400, "Invalid positive integer", param=self.path(key), code="parameter_invalid_integer"
                )
            raise StripeError(
                400,
                f"This value must be greater than or equal to {minimum}.",
                param=self.path(key),
                code="parameter_invalid_integer",
            )
        return value

    def boolean(self, key: str) -> bool | None:
        raw = self.text(key)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise invalid_param(self.path(key), f"Invalid boolean: {raw}", code="parameter_invalid_boolean")
        return raw == "true"

    def sub(self, key: str, *, required: bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise parameter_missing(self.path(key))
            return None
        if not isinstance(value, dict):
            raise invalid_param(
                self.path(key), f"Invalid hash: {self.path(key)}", code="parameter_invalid_hash"
            )
        return Params(value, self.path(key))

    def items(self, key: str, *, required: bool = False) -> list[Params]:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise parameter_missing(self.path(key))
            return []
        if not isinstance(value, list):
            raise invalid_param(
                self.path(key), f"Invalid array: {self.path(key)}", code="parameter_invalid_array"
            )
        out: list[Params] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid_param(
                    f"{self.path(key)}[{i}]",
                    f"Invalid hash: {self.path(key)}[{i}]",
                    code="parameter_invalid_hash",
                )
            out.append(Params(item, f"{self.path(key)}[{i}]"))
        return out

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid_param(
                self.path(key), f"Invalid array: {self.path(key)}", code="parameter_invalid_array"
            )
        return list(value)

    def metadata(self, key: str = "metadata") -> dict[str, str]:
        """Stripe's metadata rules: at most 50 keys, keys up to 40 characters, values up to 500."""
        sub = self.sub(key)
        if sub is None:
            return {}
        out: dict[str, str] = {}
        for k, v in sub.data.items():
            if not isinstance(v, str):
                raise invalid_param(
                    sub.path(k), f"Invalid string: {sub.path(k)}", code="parameter_invalid_string"
                )
            if len(k) > 40:
                raise invalid_param(
                    sub.path(k),
                    "Metadata keys can have up to 40 characters.",
                    code="parameter_invalid_string",
                )
            if len(v) > 500:
                raise invalid_param(
                    sub.path(k),
                    "Metadata values can have up to 500 characters.",
                    code="parameter_invalid_string",
                )
            if v != "":  # an empty value unsets the key
                out[k] = v
        if len(out) > 50:
            raise invalid_param(
                self.path(key), "Metadata can have up to 50 keys.", code="parameter_invalid_hash"
            )
        return out
