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
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")


def redact(text: str) -> str:
    """Replace every e-mail address in ``text`` by ``[email]``: exactly ``re.sub`` with
    ``EMAIL_PATTERN``, in time linear in the text. (``re.sub`` itself tries every position of
    a long run of letters and scans the run from each: quadratic, an hour for 1 MiB of
    ``x``.) An address's local part is the run of local-part characters that ends at an
    ``@``, so the leftmost match through each ``@`` can only start where that run starts
    (after the previous match), and when it fails there no later start in the run succeeds:
    the part after the ``@`` is the same for all of them."""
    if "@" not in text:
        return text
    out: list[str] = []
    copied = 0  # text[:copied] is done; a match starts at or after it, as in re.sub
    at = text.find("@")
    while at >= 0:
        start = at
        while start > copied and text[start - 1] in _LOCAL:
            start -= 1
        match = _EMAIL.match(text, start) if start < at else None
        if match is None:
            at = text.find("@", at + 1)
            continue
        out.append(text[copied : match.start()])
        out.append(EMAIL_TOKEN)
        copied = match.end()
        at = text.find("@", copied)
    out.append(text[copied:])
    return "".join(out)


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
