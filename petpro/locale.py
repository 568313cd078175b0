"""BCP 47 language tags (RFC 5646): the one syntax check and canonical case shared by the services that
store a locale (an owner's in auth, a clinic's in booking)."""

from __future__ import annotations

import re

MAX_LOCALE_LENGTH = 35  # RFC 5646 §4.4.1: tags up to 35 characters must be supported

# RFC 5646 language tags (the "langtag" production; private-use-only and grandfathered tags refused)
_BCP47 = re.compile(
    r"^(?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{5,8})"
    r"(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)"
    r"(?P<extensions>(?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*)"
    r"(?P<private>-x(?:-[a-z0-9]{1,8})+)?$",
    re.IGNORECASE,
)


def canonical_locale(tag: str) -> str | None:
    """The tag in its canonical case ("de-at" → "de-AT", "zh-hant-tw" → "zh-Hant-TW"); None if it is
    no well-formed BCP 47 tag (or longer than 35 characters)."""
    m = _BCP47.match(tag.strip())
    if m is None or len(tag) > MAX_LOCALE_LENGTH:
        return None
    parts = [m.group("language").lower()]
    if m.group("script"):
        parts.append(m.group("script").title())
    if m.group("region"):
        parts.append(m.group("region").upper())
    rest = "".join(m.group(g) or "" for g in ("variants", "extensions", "private")).lower()
    return "-".join(parts) + rest
