"""Compile a Policy, a purpose and an as-of into the DuckDB SQL of the bulk evaluator. Pure.

The SQL decides every message exactly as ``traingate.policy.evaluate.decide_message`` does:
under the policy in force at the message's time (one policy, or a ``PolicySet``: a CASE over
the effective ranges picks each message's policy), the same checks in the same order (that
policy's exclusions, deletions, the plan at the message's time, then each message basis of the
purpose in the policy's precedence), the same basis, and the same first reason. Nothing about
the policy is written here: bases, exclusions, plans, purposes and kinds come from the
``Policy`` objects; this module only knows how each *kind* of basis or exclusion is evaluated.

The SQL reads these DuckDB tables, filled by the engine from the store (``LEDGERS``; times are
BIGINT UTC microseconds and named ``ts``, since ``at`` is a DuckDB keyword)::

    l_conversations(conversation_id, account_id, incognito)
    l_account_plans(account_id, ts, event_seq, plan, organization_id)
    l_account_deletions(account_id, ts)
    l_consents(scope, subject, ts, granted)
    l_conversation_deletions(conversation_id, ts)
    l_flags(flag_id, conversation_id, policy, ts)
    l_flag_clears(flag_id, ts)
    l_conversation_settings(conversation_id, ts, event_seq, fields)   (only with content)

and, per batch, ``batch(conversation_id, ts, seq, idx)``: the messages of whole conversations
(no content; ``seq`` is the message's row key), with ``$lo``/``$hi`` the least and greatest
conversation id of the batch (``decided`` gets ``policy``: the position in the set of the
policy that decided); then ``content(seq, arrival, ts, role, content, attachments)``: the
content of the batch's eligible messages (``content_query``), read only after the decisions;
records order their messages by time, then ``arrival``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from traingate.deid import EMAIL_PATTERN, EMAIL_TOKEN, KEPT_ATTACHMENT_SOURCES
from traingate.errors import PolicyError
from traingate.policy.model import Basis, Policy
from traingate.policy.versions import PolicySet

__all__ = [
    "LEDGERS",
    "CompiledPurpose",
    "Ledger",
    "compile_purpose",
    "content_query",
    "message_query",
]


@dataclass(frozen=True, slots=True)
class Ledger:
    """One store table as the engine loads it: the store query (``?`` = as-of) and its schema."""

    name: str
    query: str
    schema: pa.Schema
    content: bool = False  # needed only when records are written


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


_S, _I = pa.string(), pa.int64()
_FOREVER = (1 << 63) - 1  # the open end of the last interval

LEDGERS: tuple[Ledger, ...] = (
    Ledger(
        "l_conversations",
        "SELECT conversation_id, account_id, CASE WHEN incognito THEN 1 ELSE 0 END"
        " FROM conversations",
        _schema(("conversation_id", _S), ("account_id", _S), ("incognito", _I)),
    ),
    Ledger(
        "l_account_plans",
        "SELECT account_id, at, event_seq, plan, organization_id FROM account_plans WHERE at <= ?",
        _schema(
            ("account_id", _S),
            ("ts", _I),
            ("event_seq", _I),
            ("plan", _S),
            ("organization_id", _S),
        ),
    ),
    Ledger(
        "l_account_deletions",
        "SELECT account_id, at FROM account_deletions WHERE at <= ?",
        _schema(("account_id", _S), ("ts", _I)),
    ),
    Ledger(
        "l_consents",
        "SELECT scope, subject, at, CASE WHEN granted THEN 1 ELSE 0 END FROM consents"
        " WHERE at <= ?",
        _schema(("scope", _S), ("subject", _S), ("ts", _I), ("granted", _I)),
    ),
    Ledger(
        "l_conversation_deletions",
        "SELECT conversation_id, at FROM conversation_deletions WHERE at <= ?",
        _schema(("conversation_id", _S), ("ts", _I)),
    ),
    Ledger(
        "l_flags",
        "SELECT flag_id, conversation_id, policy, at FROM flags WHERE at <= ?",
        _schema(("flag_id", _S), ("conversation_id", _S), ("policy", _S), ("ts", _I)),
    ),
    Ledger(
        "l_flag_clears",
        "SELECT flag_id, at FROM flag_clears WHERE at <= ?",
        _schema(("flag_id", _S), ("ts", _I)),
    ),
    Ledger(
        "l_conversation_settings",
        # Only updates that may carry a style or preferences: the stored fields are canonical
        # JSON (keys written as they are), so a key present is a quoted substring (a superset;
        # ``conv_settings`` keeps the updates that carry them, by json_exists). ``replace``
        # tests for a substring on both backends (and needs no ``%``, which psycopg reserves).
        "SELECT conversation_id, at, event_seq, fields FROM conversation_settings WHERE at <= ?"
        " AND (replace(fields, '\"custom_style\"', '') <> fields"
        " OR replace(fields, '\"preferences\"', '') <> fields)",
        _schema(("conversation_id", _S), ("ts", _I), ("event_seq", _I), ("fields", _S)),
        content=True,
    ),
)


def _required(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    """A schema of columns that are never NULL (the store declares them NOT NULL)."""
    return pa.schema([pa.field(name, kind, nullable=False) for name, kind in fields])


_META_SCHEMA = _required(("conversation_id", _S), ("ts", _I), ("seq", _I))
_CONTENT_SCHEMA = _required(
    ("seq", _I), ("arrival", _I), ("ts", _I), ("role", _S), ("content", _S), ("attachments", _S)
)


def message_query(*, order_text: str, key: str) -> tuple[str, pa.Schema]:
    """The store query streaming every message with ``at <= ?`` (its conversation, time and
    row key only), grouped by conversation in (conversation id, time, key) order, and the
    schema of its rows. ``order_text`` is the conversation id column as the store orders text
    by bytes (``StoreReader.order_text``); ``key`` is the store's key of a message row
    (``StoreReader.message_key``: SQLite's rowid, which its index on (conversation, time)
    holds, so the listing is read from the index alone). The key is not the arrival order:
    records order their messages by ``content_query``'s ``arrival``."""
    sql = (
        f"SELECT conversation_id, at, {key} FROM messages WHERE at <= ?"
        f" ORDER BY {order_text}, at, {key}"
    )
    return sql, _META_SCHEMA


def content_query(*, rows: str, key: str) -> tuple[str, pa.Schema]:
    """The store query reading the content of the messages with ``at <= ?`` selected by the
    condition ``rows`` (``StoreReader.in_values`` over eligible row keys, or over the
    conversations holding an eligible message): content no basis grants is never read.
    ``seq`` is the row key of ``message_query``, ``arrival`` the message's arrival order."""
    sql = (
        f"SELECT {key}, event_seq, at, role, content, attachments FROM messages"
        f" WHERE {rows} AND at <= ?"
    )
    return sql, _CONTENT_SCHEMA


@dataclass(frozen=True, slots=True)
class CompiledPurpose:
    """The SQL of one build. ``prepare`` runs once after the ledgers are loaded (its last
    statements, ``content_prepare``, make what only ``records`` reads, from the ledgers marked
    ``content``: an engine may run them apart, after the others); ``decide``
    (which creates ``decided(idx, conversation_id, ts, seq, basis, reason, policy)``, ``policy``
    being the position in the set of the policy in force at the message's time), ``tally``,
    ``eligible`` (the eligible messages' conversation and row key, whose content is read) and
    ``records`` (the eligible
    messages, de-identified, in record order) run per batch, with parameters ``$lo`` and
    ``$hi`` for ``decide`` and ``records``."""

    purpose: str
    as_of: int
    bases: tuple[Basis, ...]
    with_content: bool
    prepare: tuple[str, ...]
    content_prepare: tuple[str, ...]
    decide: str
    tally: str
    eligible: str
    records: str


def _q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _redact(expr: str) -> str:
    """The SQL twin of ``deid.redact``: the same pattern, every match replaced."""
    return (
        f"CASE WHEN contains({expr}, '@') THEN regexp_replace({expr}, {_q(EMAIL_PATTERN)},"
        f" {_q(EMAIL_TOKEN)}, 'g') ELSE {expr} END"
    )


def _attachments(expr: str) -> str:
    """The SQL twin of ``deid.strip_attachment`` over a stored attachments JSON array."""
    kept = ", ".join(_q(source) for source in sorted(KEPT_ATTACHMENT_SOURCES))
    struct = "STRUCT(source VARCHAR, name VARCHAR, content VARCHAR, omitted BOOLEAN)"
    shape = '[{"source":"VARCHAR","name":"VARCHAR","content":"VARCHAR"}]'
    return (
        f"CASE WHEN {expr} = '[]' THEN []::{struct}[] ELSE list_transform("
        f"from_json({expr}, {_q(shape)}), lambda a: CASE WHEN a.source IN ({kept})"
        f" THEN {{'source': a.source, 'name': {_redact('a.name')},"
        f" 'content': {_redact('a.content')}, 'omitted': false}}::{struct}"
        f" ELSE {{'source': {_redact('a.source')}, 'name': NULL, 'content': NULL,"
        f" 'omitted': true}}::{struct} END) END"
    )


def _plan_class(policy: Policy) -> str:
    whens = " ".join(f"WHEN {_q(plan)} THEN {_q(kind)}" for plan, kind in policy.plans.items())
    return f"CASE p.plan {whens} END"


@dataclass(frozen=True, slots=True)
class _BasisSql:
    grant: str
    main_reason: str | None
    late_reason: str | None  # a reason that explains but never decides (sorted last)


def _mechanism(basis: Basis) -> tuple[str, str]:
    """What the SQL evaluates once for every basis that shares it: the flags of one flag
    policy, or the consent of one scope (the plan class is per basis)."""
    if basis.kind == "flag":
        return ("flag", basis.flag_policy or "")
    if basis.kind == "consent":
        return ("consent", basis.consent_scope or "account")
    raise PolicyError(f"basis {basis.id!r}: kind {basis.kind!r} does not apply to messages")


def _mechanism_sql(index: int, mechanism: tuple[str, str]) -> tuple[tuple[str, ...], str]:
    """The joins and columns of mechanism ``index`` (``flag_i`` is a column of conv_facts)."""
    i = index
    kind, parameter = mechanism
    if kind == "flag":
        return (), f"coalesce(c.flag_{i}, false) AS flag_{i}"
    subject = "c.account_id" if parameter == "account" else "p.organization_id"
    joins = (
        f"LEFT JOIN (SELECT subject, ts, until_ts, granted FROM consent_at"
        f" WHERE scope = {_q(parameter)}) k{i} ON k{i}.subject = {subject}"
        f" AND b.ts >= k{i}.ts AND b.ts < k{i}.until_ts",
        f"LEFT JOIN consent_last_denial d{i} ON d{i}.scope = {_q(parameter)}"
        f" AND d{i}.subject = {subject}",
    )
    return joins, f"k{i}.granted AS granted_{i}, d{i}.ts AS denied_{i}"


def _basis_sql(index: int, basis: Basis) -> _BasisSql:
    """The grant and reasons of ``basis``, over the columns of its mechanism ``index``."""
    i = index
    if basis.kind == "flag":
        return _BasisSql(grant=f"flag_{i}", main_reason="'no_active_flag'", late_reason=None)
    match = f"coalesce(plan_class = {_q(basis.plan_class or '')}, false)"
    granted = f"coalesce(granted_{i}, false)"
    held = f"(denied_{i} IS NULL OR denied_{i} <= ts)"
    late = (
        f"CASE WHEN NOT {match} AND {granted} THEN 'account_scope_consent_ignored' END"
        if basis.consent_scope == "account"
        else None
    )
    return _BasisSql(
        grant=f"({match} AND {granted} AND {held})",
        main_reason=(
            f"CASE WHEN {match} THEN CASE WHEN {granted} THEN 'consent_revoked'"
            " ELSE 'no_consent' END END"
        ),
        late_reason=late,
    )


def _prepare(
    mechanisms: dict[tuple[str, str], int], as_of: int, with_content: bool, incognito: bool
) -> tuple[str, ...]:
    flags = [
        f"c.conversation_id IN (SELECT f.conversation_id FROM l_flags f"
        f" WHERE f.policy = {_q(parameter)} AND f.ts <= {as_of}"
        f" AND f.flag_id NOT IN (SELECT flag_id FROM l_flag_clears WHERE ts <= {as_of}))"
        f" AS flag_{i}"
        for (kind, parameter), i in mechanisms.items()
        if kind == "flag"
    ]
    if incognito:
        flags.append("c.incognito = 1 AS incognito")
    statements = [
        # The plan at t: the latest account.updated with at <= t, the later arrival on ties;
        # as intervals [ts, until_ts) per account, so a message finds its plan by a hash join.
        f"""CREATE OR REPLACE TABLE plans_at AS
            SELECT account_id, ts,
              coalesce(lead(ts) OVER (PARTITION BY account_id ORDER BY ts), {_FOREVER})
                AS until_ts,
              plan, organization_id
            FROM (SELECT * FROM l_account_plans WHERE ts <= {as_of}
              QUALIFY row_number() OVER (PARTITION BY account_id, ts ORDER BY event_seq DESC)
                = 1)""",
        # Consent at t: the latest change with at <= t; at one instant a denial wins (intervals).
        f"""CREATE OR REPLACE TABLE consent_at AS
            SELECT scope, subject, ts,
              coalesce(lead(ts) OVER (PARTITION BY scope, subject ORDER BY ts), {_FOREVER})
                AS until_ts,
              granted
            FROM (SELECT scope, subject, ts, bool_and(granted = 1) AS granted FROM l_consents
              WHERE ts <= {as_of} GROUP BY scope, subject, ts)""",
        # Held until as-of: no denial in (t, as-of], i.e. the last denial is at or before t.
        f"""CREATE OR REPLACE TABLE consent_last_denial AS
            SELECT scope, subject, max(ts) AS ts FROM l_consents
            WHERE granted = 0 AND ts <= {as_of} GROUP BY scope, subject""",
    ]
    statements.append(
        f"""CREATE OR REPLACE TABLE conv_facts AS
        SELECT c.conversation_id, c.account_id,
          c.conversation_id IN (SELECT conversation_id FROM l_conversation_deletions
            WHERE ts <= {as_of}) AS conv_deleted,
          c.account_id IN (SELECT account_id FROM l_account_deletions WHERE ts <= {as_of})
            AS acct_deleted
          {"".join(", " + flag for flag in flags)}
        FROM l_conversations c
        ORDER BY c.conversation_id"""
    )
    if with_content:
        # Settings as of as-of: per setting, the latest update (time, then arrival) carrying it.
        # Only records read it (``CompiledPurpose.content_prepare``).
        statements.append(
            f"""CREATE OR REPLACE TABLE conv_settings AS
            SELECT conversation_id,
              arg_max(fields, (ts, event_seq)) FILTER (WHERE json_exists(fields, '$.custom_style'))
                AS style_fields,
              arg_max(fields, (ts, event_seq)) FILTER (WHERE json_exists(fields, '$.preferences'))
                AS prefs_fields
            FROM l_conversation_settings WHERE ts <= {as_of} GROUP BY conversation_id
            ORDER BY conversation_id"""
        )
    return tuple(statements)


def _decision_sql(
    policy: Policy, purpose: str, mechanisms: dict[tuple[str, str], int]
) -> tuple[str, str]:
    """The basis and the first reason of a message under ``policy``, as SQL expressions over
    the columns of ``j``: its exclusions, deletions and plan first, then its bases in order."""
    bases = policy.message_bases(purpose)
    parts = [_basis_sql(mechanisms[_mechanism(basis)], basis) for basis in bases]
    excluded = [
        (f"{exclusion.kind}", exclusion.id)
        for exclusion in policy.exclusions
        if "message" in exclusion.applies_to
    ]
    grants = [
        f"WHEN {part.grant} THEN {_q(basis.id)}" for part, basis in zip(parts, bases, strict=True)
    ]
    reasons = [p.main_reason for p in parts if p.main_reason] + [
        p.late_reason for p in parts if p.late_reason
    ]
    denied = " OR ".join([*(column for column, _ in excluded), _DENIED])
    basis_expr = (
        f"CASE WHEN {denied} THEN NULL {' '.join(grants)} ELSE NULL END"
        if grants
        else "NULL::VARCHAR"
    )
    any_grant = f"WHEN {' OR '.join(p.grant for p in parts)} THEN NULL" if parts else ""
    exclusions = "".join(f" WHEN {column} THEN {_q(rule)}" for column, rule in excluded)
    reason_expr = (
        f"CASE{exclusions} WHEN conv_deleted THEN 'conversation_deleted'"
        " WHEN acct_deleted THEN 'account_deleted'"
        " WHEN plan IS NULL THEN 'unknown_account'"
        f" {any_grant} ELSE coalesce({', '.join([*reasons, _q('default_deny')])}) END"
    )
    return basis_expr, reason_expr


_DENIED = "conv_deleted OR acct_deleted OR plan IS NULL"


def _by_policy(position: str, expressions: list[str]) -> str:
    """The expression of the policy at ``position`` (one policy: its expression alone)."""
    if len(expressions) == 1:
        return expressions[0]
    whens = " ".join(f"WHEN {i} THEN {expr}" for i, expr in enumerate(expressions))
    return f"CASE {position} {whens} END"


def compile_purpose(*, policy: Policy | PolicySet, purpose: str, as_of: int) -> CompiledPurpose:
    """The SQL deciding every message for ``purpose`` as of ``as_of`` under ``policy`` (one
    policy, or each message under the policy of the set in force at its time)."""
    policies = PolicySet.of(policy)
    policies.require_purpose(purpose)
    order = policies.basis_order()
    by_id = {b.id: b for p in reversed(policies.policies) for b in p.message_bases(purpose)}
    bases = tuple(by_id[basis_id] for basis_id in order if basis_id in by_id)
    with_content = bool(bases)
    mechanisms: dict[tuple[str, str], int] = {}
    for basis in bases:
        mechanisms.setdefault(_mechanism(basis), len(mechanisms))
    incognito = any(p.excludes_incognito("message") for p in policies.policies)
    starts = policies.starts
    position = (
        "CASE "
        + " ".join(f"WHEN b.ts >= {starts[i]} THEN {i}" for i in range(len(starts) - 1, 0, -1))
        + " ELSE 0 END"
        if len(starts) > 1
        else "0"
    )
    columns = [
        "b.idx", "b.conversation_id", "b.ts", "b.seq", f"{position} AS policy",
        "coalesce(c.conv_deleted, false) AS conv_deleted",
        "coalesce(c.acct_deleted, false) AS acct_deleted",
        "p.plan", f"{_plan_class(policies.policies[0])} AS plan_class",
    ]  # fmt: skip
    if incognito:
        columns.append("coalesce(c.incognito, false) AS incognito")
    joins = [
        "LEFT JOIN (SELECT * FROM conv_facts WHERE conversation_id BETWEEN $lo AND $hi) c"
        " ON c.conversation_id = b.conversation_id",
        "LEFT JOIN plans_at p ON p.account_id = c.account_id"
        " AND b.ts >= p.ts AND b.ts < p.until_ts",
    ]
    for mechanism, i in mechanisms.items():
        mechanism_joins, mechanism_columns = _mechanism_sql(i, mechanism)
        columns.append(mechanism_columns)
        joins.extend(mechanism_joins)
    decisions = [_decision_sql(p, purpose, mechanisms) for p in policies.policies]
    basis_expr = _by_policy("policy", [basis for basis, _ in decisions])
    reason_expr = _by_policy("policy", [reason for _, reason in decisions])
    decide = (
        "CREATE OR REPLACE TEMP TABLE decided AS"
        f" WITH j AS (SELECT {', '.join(columns)} FROM batch b {' '.join(joins)})"
        f" SELECT idx, conversation_id, ts, seq, {basis_expr} AS basis, {reason_expr} AS reason,"
        " policy FROM j"
    )
    tally = "SELECT basis, reason, count(*)::BIGINT FROM decided GROUP BY basis, reason"
    precedence = " ".join(f"WHEN {_q(b.id)} THEN {i}" for i, b in enumerate(bases))
    # One row per eligible message, de-identified, in record order: by conversation, then
    # basis precedence, then time and arrival. The engine cuts the rows into records.
    records = (
        "SELECT d.conversation_id, d.basis,"
        " CAST(CAST(make_timestamp(b.ts) AS DATE) AS VARCHAR) AS date,"
        f" {{'role': b.role, 'content': {_redact('b.content')},"
        f" 'attachments': {_attachments('b.attachments')}}} AS message,"
        " c.style_fields, c.prefs_fields"
        " FROM decided d JOIN content b ON b.seq = d.seq"
        " LEFT JOIN (SELECT conversation_id, style_fields, prefs_fields FROM conv_settings"
        " WHERE conversation_id BETWEEN $lo AND $hi) c ON c.conversation_id = d.conversation_id"
        f" WHERE d.basis IS NOT NULL ORDER BY d.conversation_id, CASE d.basis {precedence} END,"
        " b.ts, b.arrival"
    )
    prepare = _prepare(mechanisms, as_of, with_content, incognito)
    return CompiledPurpose(
        purpose=purpose,
        as_of=as_of,
        bases=bases,
        with_content=with_content,
        prepare=prepare,
        content_prepare=prepare[-1:] if with_content else (),
        decide=decide,
        tally=tally,
        eligible=("SELECT conversation_id, seq FROM decided WHERE basis IS NOT NULL ORDER BY 1, 2"),
        records=records if with_content else "",
    )
