"""Readers for the upstream conversation data sets (pure: text in, frozen dataclasses out).

- OASST ``en_100_tree.jsonl``: one message tree per line; we follow the best path from the root
  prompt (the reply with the lowest ``rank``; unranked replies rank after ranked ones, ties keep
  file order) and keep the thumbs (``+1``/``-1``) and ``red_flag`` emoji counts of each message.
- HH-RLHF ``test.jsonl.gz``: one ``{"chosen", "rejected"}`` pair per line; we split the
  ``chosen`` transcript at ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` into turns.

Turn text is kept exactly as upstream wrote it, except that the single space that follows the
``Human:``/``Assistant:`` marker of an HH-RLHF transcript is a separator, not text, and is dropped.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "HH_FILE",
    "OASST_FILE",
    "Role",
    "SourceConversation",
    "SourceTurn",
    "load_hh_rlhf",
    "load_oasst",
    "parse_hh_rows",
    "parse_hh_transcript",
    "parse_oasst_trees",
]

OASST_FILE = Path("oasst_en100_trees") / "en_100_tree.jsonl"
HH_FILE = Path("hh_rlhf_harmless_base_test") / "test.jsonl.gz"

Role = Literal["user", "assistant"]

_HH_MARKER = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES: Mapping[str, Role] = {"Human": "user", "Assistant": "assistant"}
_OASST_ROLES: Mapping[str, Role] = {"prompter": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class SourceTurn:
    """One message of an upstream conversation, with the upstream signals we map."""

    message_id: str
    role: Role
    text: str
    thumbs_up: int = 0
    thumbs_down: int = 0
    red_flags: int = 0


@dataclass(frozen=True, slots=True)
class SourceConversation:
    """One linear upstream conversation. ``origin`` is ``oasst`` or ``hh-rlhf``."""

    conversation_id: str
    origin: Literal["oasst", "hh-rlhf"]
    turns: tuple[SourceTurn, ...]


def _rank_key(indexed: tuple[int, Mapping[str, Any]]) -> tuple[bool, int, int]:
    index, reply = indexed
    rank = reply.get("rank")
    return (not isinstance(rank, int), rank if isinstance(rank, int) else 0, index)


def _best_path(prompt: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    path = [prompt]
    node = prompt
    while replies := node.get("replies") or []:
        node = min(enumerate(replies), key=_rank_key)[1]
        path.append(node)
    return path


def _emoji(message: Mapping[str, Any], name: str) -> int:
    emojis = message.get("emojis") or {}
    value = emojis.get(name, 0)
    return value if isinstance(value, int) else 0


def parse_oasst_trees(lines: Iterable[str]) -> list[SourceConversation]:
    """Turn OASST tree lines into conversations along each tree's best path."""
    conversations: list[SourceConversation] = []
    for line in lines:
        if not line.strip():
            continue
        tree = json.loads(line)
        turns = tuple(
            SourceTurn(
                message_id=f"oasst-{message['message_id']}",
                role=_OASST_ROLES[message["role"]],
                text=message["text"],
                thumbs_up=_emoji(message, "+1"),
                thumbs_down=_emoji(message, "-1"),
                red_flags=_emoji(message, "red_flag"),
            )
            for message in _best_path(tree["prompt"])
        )
        conversations.append(
            SourceConversation(
                conversation_id=f"oasst-tree-{tree['message_tree_id']}",
                origin="oasst",
                turns=turns,
            )
        )
    return conversations


def parse_hh_transcript(transcript: str) -> list[tuple[Role, str]]:
    """Split an HH-RLHF transcript into ``(role, text)`` turns, in order."""
    parts = _HH_MARKER.split(transcript)
    if parts[0].strip():
        raise ValueError("an HH-RLHF transcript must start with a Human or Assistant marker")
    turns: list[tuple[Role, str]] = []
    for marker, text in zip(parts[1::2], parts[2::2], strict=True):
        turns.append((_HH_ROLES[marker], text.removeprefix(" ")))
    return turns


def parse_hh_rows(lines: Iterable[str]) -> list[SourceConversation]:
    """Turn HH-RLHF rows into conversations (``hh-0001`` is the file's first row)."""
    conversations: list[SourceConversation] = []
    row = 0
    for line in lines:
        if not line.strip():
            continue
        row += 1
        pair = json.loads(line)
        conversation_id = f"hh-{row:04d}"
        turns = tuple(
            SourceTurn(message_id=f"{conversation_id}-m{index:02d}", role=role, text=text)
            for index, (role, text) in enumerate(parse_hh_transcript(pair["chosen"]), start=1)
        )
        conversations.append(
            SourceConversation(conversation_id=conversation_id, origin="hh-rlhf", turns=turns)
        )
    return conversations


def load_oasst(source_dir: Path) -> list[SourceConversation]:
    """Read ``oasst_en100_trees/en_100_tree.jsonl`` under ``source_dir``."""
    with (source_dir / OASST_FILE).open(encoding="utf-8") as handle:
        return parse_oasst_trees(handle)


def load_hh_rlhf(source_dir: Path) -> list[SourceConversation]:
    """Read ``hh_rlhf_harmless_base_test/test.jsonl.gz`` under ``source_dir``."""
    with gzip.open(source_dir / HH_FILE, mode="rt", encoding="utf-8") as handle:
        return parse_hh_rows(handle)
