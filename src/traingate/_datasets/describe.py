"""Words that describe every build the same way, shared by its dataset card (``card.py``) and
its Croissant file (``croissant.py``): the de-identification applied (SPEC §3) and each shape."""

from __future__ import annotations

__all__ = ["DEID_RULES", "SHAPE_TEXT"]

DEID_RULES: tuple[str, ...] = (
    "No account, e-mail, organization, conversation, message, feedback or flag id leaves; a "
    "record's id is a keyed hash (HMAC-SHA256 with the build's signing key), stable for the "
    "same item and meaningless without the key.",
    "No time finer than a UTC date leaves: a record's date is the UTC date of its first message.",
    "Every e-mail address in any text (contents, attachment names and contents, comments, "
    "categories, keys and values of styles and preferences) is replaced by [email].",
    "Attachment content is kept only for uploads; an attachment of an integration (Google "
    "Drive, Gmail, GitHub, MCP servers, ...) leaves as its source alone, marked omitted.",
    "A feedback report is never joined with another record: nothing links it to its account "
    "or to another record.",
)

SHAPE_TEXT: dict[str, str] = {
    "records": "traingate's records (SPEC §4): record_id, kind, basis, date, messages with "
    "their attachments, custom_style, preferences, rating, comment, categories, "
    "rated_message_index.",
    "chat": "one row per record, {messages: [{role, content}]} (TRL's conversational "
    "language-modeling format); attachments are written into their message's content.",
    "kto": "one row per feedback report whose rated message is the assistant's: prompt (the "
    "messages before it), completion (the rated message) and label (true for a thumbs up), "
    "TRL's conversational unpaired-preference format.",
    "openai": "one row per record that holds an assistant message, {messages: [{role, "
    "content}]} (OpenAI's chat fine-tuning JSONL); attachments are written into their "
    "message's content.",
}
