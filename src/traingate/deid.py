"""De-identification of what leaves the system (SPEC §3). Pure functions.

The same rules run in bulk inside the build engines as SQL; ``EMAIL_PATTERN`` is the one
pattern both use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "EMAIL_PATTERN",
    "EMAIL_TOKEN",
    "KEPT_ATTACHMENT_SOURCES",
    "redact",
    "redact_json",
    "redact_json_text",
    "strip_attachment",
]

EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
EMAIL_TOKEN = "[email]"
KEPT_ATTACHMENT_SOURCES = frozenset({"upload"})
_EMAIL = re.compile(EMAIL_PATTERN)


def redact(text: str) -> str:
    """Replace every e-mail address in ``text`` by ``[email]``."""
    return _EMAIL.sub(EMAIL_TOKEN, text)


def redact_json(value: Any) -> Any:
    """Redact every string in a JSON value: keys and values, at any depth. Keys that come
    out alike (two e-mail addresses) all stay, the later ones as ``[email] (2)``, ``[email]
    (3)``, ... in the object's order: no value is dropped."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, dict):
        redacted: dict[str, Any] = {}
        for key, item in value.items():
            name = base = redact(str(key))
            copy = 1
            while name in redacted:
                copy += 1
                name = f"{base} ({copy})"
            redacted[name] = redact_json(item)
        return redacted
    return value


def redact_json_text(value: Any) -> str | None:
    """A style or preferences object as the JSON text a record carries (None stays None)."""
    if value is None:
        return None
    return json.dumps(redact_json(value), sort_keys=True, ensure_ascii=False)


def strip_attachment(attachment: Mapping[str, Any]) -> dict[str, Any]:
    """An attachment as it may leave: uploads keep their (redacted) name and content; any
    other source is an integration and leaves as
    ``{source, name: null, content: null, omitted: true}``."""
    source = str(attachment.get("source", ""))
    if source in KEPT_ATTACHMENT_SOURCES:
        name = attachment.get("name")
        content = attachment.get("content")
        return {
            "source": source,
            "name": redact(name) if isinstance(name, str) else None,
            "content": redact(content) if isinstance(content, str) else None,
            "omitted": False,
        }
    return {"source": redact(source), "name": None, "content": None, "omitted": True}
