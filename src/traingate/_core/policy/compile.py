"""Compile a Policy, a purpose and an as-of into the DuckDB SQL of the bulk evaluator. Pure.

The SQL decides every message exactly as ``traingate._core.policy.evaluate.decide_message`` does
(with ``traingate._core.policy.coverage``): under the policy in force at the message's time (one
policy, or a ``PolicySet``: a CASE over the effective ranges picks each message's policy), the
same checks in the same order (deletions, content expiry, the plan at the message's time, then
each message basis of the purpose in the policy's precedence), the same basis and the same
first reason. Nothing about the policy is written here: plans, bases, their parameters,
retention rules and reason ids come from the ``Policy`` objects and their vocabulary; this
module only knows how each *mechanism* is evaluated:

- consent (per scope and setting): the consent at the message's time, the ``default`` when no
  event is that old, and the first denial after it (``revocation = retroactive``: covered at
  as-of while there is none); ``coverage = conversation``: a window over the conversation's
  messages (each judged under the deciding policy's basis) says whether one of them is
  covered; ``exclude_modes`` against the conversation's mode;
- flag (per ``flag_policy``): a flag raised at or before as-of and not cleared by then;
- ``[[retention]]``: rules that apply to every message (``always``, ``mode:<m>``) alone make
  the expiry ``time + longest keep``; with ``basis:<id>`` rules, the as-of instants at which
  each rule applies are intervals (``coverage.coverage``), each cut at its deadline into a
  part that keeps the content and a part that lets it expire; the content has expired by
  as-of when an instant at or before as-of lies in a letting part and in no keeping part (the
  first such instant starts a letting part or ends a keeping one: those are the candidates).

SQL is generated only for the mechanisms the policies of the set use: a policy without
retention, modes or conversation coverage compiles to the joins of consent and plans alone.

The SQL reads these DuckDB tables, filled by the engine from the store (``LEDGERS``; times are
BIGINT UTC microseconds and named ``ts``, since ``at`` is a DuckDB keyword)::

    l_conversations(conversation_id, account_id, mode)
    l_account_plans(account_id, ts, event_seq, plan, organization_id)
    l_account_deletions(account_id, ts)
    l_consents(scope, subject, setting, ts, granted)
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

from traingate._core.deid import EMAIL_PATTERN, EMAIL_TOKEN, KEPT_ATTACHMENT_SOURCES
from traingate._core.policy.model import (
    MODES,
    Basis,
    ConsentBasis,
    FlagBasis,
    MessageBasis,
    Policy,
    Reasons,
)
from traingate._core.policy.versions import PolicySet
from traingate._core.timeutil import FAR_FUTURE, Duration

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
    """One store table as the engine loads it: the store query (``?`` = as-of), its schema
    and the table it reads (``FROM <table>``, once: what staging streams split by its heap
    blocks, ``_store/export.BlockRange``)."""

    name: str
    query: str
    schema: pa.Schema
    table: str
    content: bool = False  # needed only when records are written


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


_S, _I = pa.string(), pa.int64()
_FOREVER = FAR_FUTURE  # the open end of the last interval: never
_BEFORE = -(1 << 62)  # before every instant (SPEC §2 starts at 1970)

LEDGERS: tuple[Ledger, ...] = (
    Ledger(
        "l_conversations",
        "SELECT conversation_id, account_id, mode FROM conversations",
        _schema(("conversation_id", _S), ("account_id", _S), ("mode", _S)),
        table="conversations",
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
        table="account_plans",
    ),
    Ledger(
        "l_account_deletions",
        "SELECT account_id, at FROM account_deletions WHERE at <= ?",
        _schema(("account_id", _S), ("ts", _I)),
        table="account_deletions",
    ),
    Ledger(
        "l_consents",
        "SELECT scope, subject, setting, at, CASE WHEN granted THEN 1 ELSE 0 END FROM consents"
        " WHERE at <= ?",
        _schema(("scope", _S), ("subject", _S), ("setting", _S), ("ts", _I), ("granted", _I)),
        table="consents",
    ),
    Ledger(
        "l_conversation_deletions",
        "SELECT conversation_id, at FROM conversation_deletions WHERE at <= ?",
        _schema(("conversation_id", _S), ("ts", _I)),
        table="conversation_deletions",
    ),
    Ledger(
        "l_flags",
        "SELECT flag_id, conversation_id, policy, at FROM flags WHERE at <= ?",
        _schema(("flag_id", _S), ("conversation_id", _S), ("policy", _S), ("ts", _I)),
        table="flags",
    ),
    Ledger(
        "l_flag_clears",
        "SELECT flag_id, at FROM flag_clears WHERE at <= ?",
        _schema(("flag_id", _S), ("ts", _I)),
        table="flag_clears",
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
        table="conversation_settings",
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


# -- what the policies of the set use ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mechanisms:
    """The columns every message gets, shared by the bases that read them: the consent of one
    scope and setting (``granted_<k>`` at the message's time, NULL without an event that old;
    ``denial_<k>``, the first denial after it, at or before as-of), the flags of one flag
    policy (``flag_<f>``, active at as-of), the plan class under each policy (``class_<i>``,
    NULL for a plan that policy does not declare) and whether the mode is needed."""

    consent: dict[tuple[str, str], int]
    flags: dict[str, int]
    classes: tuple[str, ...]
    mode: bool
    default_granted: bool
    flag_intervals: bool

    def consent_index(self, basis: ConsentBasis) -> int:
        return self.consent[(basis.consent_scope, basis.setting)]


def _used_bases(policy: Policy, purpose: str) -> list[MessageBasis]:
    """The message bases a decision under ``policy`` reads: those granting the purpose and
    those its retention rules name."""
    used = list(policy.message_bases(purpose))
    for rule in policy.retention:
        basis = policy.basis(rule.basis_id) if rule.basis_id is not None else None
        if isinstance(basis, ConsentBasis | FlagBasis) and basis not in used:
            used.append(basis)
    return used


def _mechanisms(policies: PolicySet, purpose: str) -> _Mechanisms:
    consent: dict[tuple[str, str], int] = {}
    flags: dict[str, int] = {}
    mode = default_granted = flag_intervals = False
    for policy in policies.policies:
        for basis in _used_bases(policy, purpose):
            mode = mode or bool(basis.exclude_modes)
            if isinstance(basis, FlagBasis):
                flags.setdefault(basis.flag_policy, len(flags))
            else:
                consent.setdefault((basis.consent_scope, basis.setting), len(consent))
                default_granted = default_granted or basis.default_granted
        for rule in policy.retention:
            mode = mode or rule.mode is not None
            flag_intervals = flag_intervals or isinstance(
                policy.basis(rule.basis_id or ""), FlagBasis
            )
    union = policies.plans
    classes = tuple(
        "plan_class" if policy.plans == union else f"class_{i}"
        for i, policy in enumerate(policies.policies)
    )
    return _Mechanisms(consent, flags, classes, mode, default_granted, flag_intervals)


def _plan_class(plans: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {_q(plan)} THEN {_q(kind)}" for plan, kind in plans.items())
    return f"CASE p.plan {whens} END"


def _deadline(keep: Duration, ts: str) -> str:
    """``ts + keep`` as SQL (``Duration.add_to``: months first, a day the month lacks becoming
    its last, then days). A keep that reaches past every instant is never."""
    months = keep.years * 12 + keep.months
    if months > 1_200_000 or keep.days > 10_000_000:
        return str(_FOREVER)
    moment = f"make_timestamp({ts})"
    if months:
        moment = f"({moment} + to_months({months}))"
    if keep.days:
        moment = f"({moment} + to_days({keep.days}))"
    return f"epoch_us({moment})"


# -- one basis under one policy ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _BasisSql:
    """SQL over the columns of ``w`` for basis ``basis`` of policy ``i``."""

    i: int
    j: int
    basis: MessageBasis
    m: _Mechanisms
    said: Reasons

    @property
    def excluded(self) -> str:
        if not self.basis.exclude_modes:
            return "false"
        return f"(mode IN ({', '.join(_q(mode) for mode in self.basis.exclude_modes)}))"

    @property
    def match(self) -> str:
        assert isinstance(self.basis, ConsentBasis)
        return f"coalesce({self.m.classes[self.i]} = {_q(self.basis.plan_class)}, false)"

    @property
    def k(self) -> int:
        assert isinstance(self.basis, ConsentBasis)
        return self.m.consent_index(self.basis)

    @property
    def own(self) -> str:
        """Consent (or the default) at the message's own time."""
        assert isinstance(self.basis, ConsentBasis)
        return f"coalesce(granted_{self.k}, {str(self.basis.default_granted).lower()})"

    @property
    def end(self) -> str:
        """When the coverage that ``own`` starts ends (at or before as-of; else never)."""
        assert isinstance(self.basis, ConsentBasis)
        return (
            str(_FOREVER) if self.basis.forward_only else f"coalesce(denial_{self.k}, {_FOREVER})"
        )

    @property
    def held(self) -> str:
        """That coverage still holds at as-of (``retroactive``: no denial since)."""
        assert isinstance(self.basis, ConsentBasis)
        return "true" if self.basis.forward_only else f"denial_{self.k} IS NULL"

    @property
    def starts(self) -> str:
        """The message starts a coverage of its own (``coverage.own_consent`` true)."""
        excluded = f" AND NOT {self.excluded}" if self.basis.exclude_modes else ""
        return f"({self.match}{excluded} AND {self.own})"

    @property
    def covers(self) -> str:
        """The message's own coverage holds at as-of."""
        held = self.held
        return self.starts if held == "true" else f"({self.starts} AND {held})"

    @property
    def window(self) -> str | None:
        """``coverage = conversation``: a message of the conversation is covered at as-of."""
        if not (isinstance(self.basis, ConsentBasis) and self.basis.by_conversation):
            return None
        return f"bool_or({self.covers}) OVER (PARTITION BY conversation_id) AS cc_{self.i}_{self.j}"

    @property
    def grant(self) -> str:
        excluded = f"NOT {self.excluded} AND " if self.basis.exclude_modes else ""
        if isinstance(self.basis, FlagBasis):
            return f"({excluded}flag_{self.m.flags[self.basis.flag_policy]})"
        if self.basis.by_conversation:
            return f"({excluded}{self.match} AND cc_{self.i}_{self.j})"
        return self.covers

    @property
    def reason(self) -> str:
        """The basis's reason when it does not grant (NULL: it gives none)."""
        if isinstance(self.basis, FlagBasis):
            said = self.said.flag
            if not self.basis.exclude_modes:
                return _q(said.inactive)
            return f"CASE WHEN {self.excluded} THEN {_q(said.mode)} ELSE {_q(said.inactive)} END"
        said_ = self.said.consent
        mode = f" WHEN {self.excluded} THEN {_q(said_.mode)}" if self.basis.exclude_modes else ""
        return (
            f"CASE WHEN {self.match} THEN CASE{mode} WHEN {self.own} THEN {_q(said_.revoked)}"
            f" ELSE {_q(said_.not_granted)} END END"
        )

    @property
    def late(self) -> str | None:
        """A reason that explains a denial but never decides it: an account-scope consent of
        an account whose plan is of another class."""
        if not isinstance(self.basis, ConsentBasis) or self.basis.consent_scope != "account":
            return None
        return (
            f"CASE WHEN NOT {self.match} AND coalesce(granted_{self.k}, false)"
            f" THEN {_q(self.said.consent.scope_ignored)} END"
        )


# -- retention ---------------------------------------------------------------------------------


def _static_expiry(policy: Policy, as_of: int) -> str:
    """Expired by as-of, for rules that apply to a message at every instant or never
    (``always``, ``mode:<m>``): some applies and every one that applies has run out."""
    applies = []
    for rule in policy.retention:
        when = "true" if rule.mode is None else f"mode = {_q(rule.mode)}"
        applies.append((when, _deadline(rule.keep_duration, "ts")))
    some = " OR ".join(when for when, _ in applies)
    every = " AND ".join(f"(NOT {when} OR {deadline} <= {as_of})" for when, deadline in applies)
    return f"(({some}) AND {every})"


def _intervals(
    i: int, policy: Policy, parts: dict[str, _BasisSql], as_of: int, cte: list[str]
) -> list[str]:
    """The as-of instants at which each retention rule of policy ``i`` applies to a message
    that might have expired by as-of, as rows ``(idx, d, s, e)``: the rule's deadline and an
    interval ``[s, e)`` (``coverage.coverage``, cut at as-of's ledgers). Adds the CTEs they
    read to ``cte``."""
    columns = ", ".join(
        f"{_deadline(rule.keep_duration, 'ts')} AS dl_{n}"
        for n, rule in enumerate(policy.retention)
    )
    # A message can expire by as-of only if some deadline has passed, and no rule that
    # applies to it at every instant keeps it beyond as-of.
    gates = [f"least({', '.join(f'dl_{n}' for n in range(len(policy.retention)))}) <= {as_of}"]
    gates += [f"dl_{n} <= {as_of}" for n, r in enumerate(policy.retention) if r.when == "always"]
    cte.append(
        f"x_{i} AS (SELECT * FROM (SELECT *, {columns} FROM w WHERE policy = {i})"
        f" WHERE {' AND '.join(gates)})"
    )
    rows = []
    for n, rule in enumerate(policy.retention):
        d = f"dl_{n}"
        if rule.basis_id is None:
            where = "" if rule.mode is None else f" WHERE mode = {_q(rule.mode)}"
            rows.append(f"SELECT idx, {d} AS d, ts AS s, {_FOREVER} AS e FROM x_{i}{where}")
            continue
        part = parts[rule.basis_id]
        if isinstance(part.basis, FlagBasis):
            rows.append(
                f"SELECT x.idx, x.{d} AS d, greatest(f.ts, x.ts) AS s, f.e FROM x_{i} x"
                " JOIN (SELECT * FROM flag_spans WHERE conversation_id BETWEEN $lo AND $hi) f"
                f" ON f.conversation_id = x.conversation_id"
                f" AND f.policy = {_q(part.basis.flag_policy)}"
                f" WHERE x.plan IS NOT NULL AND NOT {part.excluded} AND greatest(f.ts, x.ts) < f.e"
            )
        elif part.basis.by_conversation:
            name = f"cg_{i}_{part.j}"
            if not any(c.startswith(f"{name} AS") for c in cte):
                cte.append(
                    f"{name} AS (SELECT conversation_id, e, min(ts) AS s FROM"
                    f" (SELECT conversation_id, ts, {part.end} AS e FROM w WHERE {part.starts})"
                    " GROUP BY conversation_id, e)"
                )
            rows.append(
                f"SELECT x.idx, x.{d} AS d, greatest(g.s, x.ts) AS s, g.e FROM x_{i} x"
                f" JOIN {name} g ON g.conversation_id = x.conversation_id"
                f" WHERE {part.match} AND NOT {part.excluded} AND greatest(g.s, x.ts) < g.e"
            )
        else:
            rows.append(
                f"SELECT idx, {d} AS d, ts AS s, {part.end} AS e FROM x_{i} WHERE {part.starts}"
            )
    return rows


def _expiry_ctes(rows: list[str], as_of: int) -> list[str]:
    """The messages expired by as-of (``expired(idx)``) from their rules' intervals."""
    return [
        f"iv AS ({' UNION ALL '.join(rows)})",
        # Each interval cut at its deadline: before it the rule keeps the content, from it on
        # the rule lets it go.
        "pieces AS (SELECT idx, s, least(e, d) AS e, false AS lets FROM iv WHERE s < least(e, d)"
        " UNION ALL SELECT idx, greatest(s, d) AS s, e, true AS lets FROM iv"
        " WHERE greatest(s, d) < e)",
        "cand AS (SELECT DISTINCT idx, CASE WHEN lets THEN s ELSE e END AS c FROM pieces"
        f" WHERE CASE WHEN lets THEN s ELSE e END <= {as_of})",
        "expired AS (SELECT DISTINCT idx FROM (SELECT k.idx FROM cand k JOIN pieces p"
        " ON p.idx = k.idx AND p.s <= k.c AND k.c < p.e GROUP BY k.idx, k.c"
        " HAVING bool_and(p.lets)))",
    ]


# -- the decision ------------------------------------------------------------------------------


def _decision_sql(policy: Policy, parts: list[_BasisSql], expired: str | None) -> tuple[str, str]:
    """The basis and the first reason of a message under ``policy``, as SQL expressions over
    the columns of ``w``: deletions, content expiry and plan first, then its bases in order."""
    said = policy.vocabulary.decision
    blocked = [("conv_deleted", said.conversation_gone), ("acct_deleted", said.account_gone)]
    if expired is not None:
        blocked.append((expired, said.content_expiry))
    blocked.append(("plan IS NULL", said.plan_unknown))
    denied = " OR ".join(column for column, _ in blocked)
    grants = " ".join(f"WHEN {part.grant} THEN {_q(part.basis.id)}" for part in parts)
    basis_expr = f"CASE WHEN {denied} THEN NULL {grants} END" if parts else "NULL::VARCHAR"
    reasons = [part.reason for part in parts] + [
        late for part in parts if (late := part.late) is not None
    ]
    any_grant = f" WHEN {' OR '.join(part.grant for part in parts)} THEN NULL" if parts else ""
    whens = "".join(f" WHEN {column} THEN {_q(reason)}" for column, reason in blocked)
    reason_expr = (
        f"CASE{whens}{any_grant} ELSE coalesce({', '.join([*reasons, _q(said.no_basis)])}) END"
    )
    return basis_expr, reason_expr


def _by_policy(position: str, expressions: list[str]) -> str:
    """The expression of the policy at ``position`` (one policy: its expression alone)."""
    if len(expressions) == 1:
        return expressions[0]
    whens = " ".join(f"WHEN {i} THEN {expr}" for i, expr in enumerate(expressions))
    return f"CASE {position} {whens} END"


def _prepare(m: _Mechanisms, as_of: int, with_content: bool) -> tuple[str, ...]:
    flags = [
        f"c.conversation_id IN (SELECT f.conversation_id FROM l_flags f"
        f" WHERE f.policy = {_q(flag_policy)} AND f.ts <= {as_of}"
        f" AND f.flag_id NOT IN (SELECT flag_id FROM l_flag_clears WHERE ts <= {as_of}))"
        f" AS flag_{i}"
        for flag_policy, i in m.flags.items()
    ]
    if m.mode:
        flags.append(f"coalesce(c.mode, {_q(MODES[0])}) AS mode")
    # Before a subject's first consent event: no consent (the default decides) and its
    # first denial to come; needed only when a default grants.
    before = (
        f" UNION ALL SELECT scope, subject, setting, {_BEFORE} AS ts, NULL AS granted"
        f" FROM l_consents WHERE ts <= {as_of} GROUP BY scope, subject, setting"
        if m.default_granted
        else ""
    )
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
        # Consent at t: the latest change with at <= t; at one instant a denial wins. As
        # intervals [ts, until_ts) per scope, subject and setting, each with the first denial
        # after it (at or before as-of): the same for every t of the interval.
        f"""CREATE OR REPLACE TABLE consent_at AS
            SELECT scope, subject, setting, ts,
              coalesce(lead(ts) OVER w, {_FOREVER}) AS until_ts,
              granted,
              min(CASE WHEN NOT granted THEN ts END)
                OVER (w ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS denial
            FROM (SELECT scope, subject, setting, ts, bool_and(granted = 1) AS granted
              FROM l_consents WHERE ts <= {as_of} GROUP BY scope, subject, setting, ts{before})
            WINDOW w AS (PARTITION BY scope, subject, setting ORDER BY ts)""",
        f"""CREATE OR REPLACE TABLE conv_facts AS
        SELECT c.conversation_id, c.account_id,
          c.conversation_id IN (SELECT conversation_id FROM l_conversation_deletions
            WHERE ts <= {as_of}) AS conv_deleted,
          c.account_id IN (SELECT account_id FROM l_account_deletions WHERE ts <= {as_of})
            AS acct_deleted
          {"".join(", " + flag for flag in flags)}
        FROM l_conversations c
        ORDER BY c.conversation_id""",
    ]
    if m.flag_intervals:
        # Each flag as the interval [raised, first clear) of as-of instants it is active.
        statements.append(
            f"""CREATE OR REPLACE TABLE flag_spans AS
            SELECT f.conversation_id, f.policy, f.ts, coalesce(min(c.ts), {_FOREVER}) AS e
            FROM l_flags f LEFT JOIN l_flag_clears c ON c.flag_id = f.flag_id AND c.ts <= {as_of}
            WHERE f.ts <= {as_of} GROUP BY f.flag_id, f.conversation_id, f.policy, f.ts
            ORDER BY f.conversation_id"""
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


def compile_purpose(*, policy: Policy | PolicySet, purpose: str, as_of: int) -> CompiledPurpose:
    """The SQL deciding every message for ``purpose`` as of ``as_of`` under ``policy`` (one
    policy, or each message under the policy of the set in force at its time)."""
    policies = PolicySet.of(policy)
    policies.require_purpose(purpose)
    order = policies.basis_order()
    by_id = {b.id: b for p in reversed(policies.policies) for b in p.message_bases(purpose)}
    bases = tuple(by_id[basis_id] for basis_id in order if basis_id in by_id)
    with_content = bool(bases)
    m = _mechanisms(policies, purpose)
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
        "p.plan", f"{_plan_class(policies.plans)} AS plan_class",
    ]  # fmt: skip
    union = _plan_class(policies.plans)
    columns += [
        f"CASE WHEN p.plan IN ({', '.join(_q(plan) for plan in p.plans)}) THEN {union} END"
        f" AS {m.classes[i]}"
        for i, p in enumerate(policies.policies)
        if m.classes[i] != "plan_class"
    ]
    if m.mode:
        columns.append(f"coalesce(c.mode, {_q(MODES[0])}) AS mode")
    joins = [
        "LEFT JOIN (SELECT * FROM conv_facts WHERE conversation_id BETWEEN $lo AND $hi) c"
        " ON c.conversation_id = b.conversation_id",
        "LEFT JOIN plans_at p ON p.account_id = c.account_id"
        " AND b.ts >= p.ts AND b.ts < p.until_ts",
    ]
    for (scope, setting), k in m.consent.items():
        subject = "c.account_id" if scope == "account" else "p.organization_id"
        joins.append(
            f"LEFT JOIN (SELECT subject, ts, until_ts, granted, denial FROM consent_at"
            f" WHERE scope = {_q(scope)} AND setting = {_q(setting)}) k{k}"
            f" ON k{k}.subject = {subject} AND b.ts >= k{k}.ts AND b.ts < k{k}.until_ts"
        )
        columns.append(f"k{k}.granted AS granted_{k}, k{k}.denial AS denial_{k}")
    columns += [f"coalesce(c.flag_{f}, false) AS flag_{f}" for f in m.flags.values()]
    ctes = [f"j AS (SELECT {', '.join(columns)} FROM batch b {' '.join(joins)})"]
    windows: list[str] = []
    rows: list[str] = []
    decisions = []
    retention_ctes: list[str] = []
    for i, p in enumerate(policies.policies):
        said = p.vocabulary
        used = {b.id: _BasisSql(i, j, b, m, said) for j, b in enumerate(_used_bases(p, purpose))}
        windows += [w for part in used.values() if (w := part.window) is not None]
        expired: str | None = None
        if p.retention and all(rule.basis_id is None for rule in p.retention):
            expired = _static_expiry(p, as_of)
        elif p.retention:
            rows += _intervals(i, p, used, as_of, retention_ctes)
            expired = "expired"
        deciding = [used[b.id] for b in p.message_bases(purpose)]
        decisions.append(_decision_sql(p, deciding, expired))
    ctes.append(
        f"w AS (SELECT *{''.join(', ' + w for w in windows)} FROM j)"
        if windows
        else "w AS (SELECT * FROM j)"
    )
    source = "w"
    if rows:
        ctes[-1] = ctes[-1].replace("w AS (", "w AS MATERIALIZED (", 1)
        ctes += retention_ctes + _expiry_ctes(rows, as_of)
        ctes.append(
            "v AS (SELECT w.*, x.idx IS NOT NULL AS expired FROM w"
            " LEFT JOIN expired x ON x.idx = w.idx)"
        )
        source = "v"
    basis_expr = _by_policy("policy", [basis for basis, _ in decisions])
    reason_expr = _by_policy("policy", [reason for _, reason in decisions])
    decide = (
        f"CREATE OR REPLACE TEMP TABLE decided AS WITH {', '.join(ctes)}"
        f" SELECT idx, conversation_id, ts, seq, {basis_expr} AS basis, {reason_expr} AS reason,"
        f" policy FROM {source}"
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
    prepare = _prepare(m, as_of, with_content)
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
