"""The store's schema as numbered migrations, applied in order and recorded in schema_migrations.

Each migration is a list of statements valid on SQLite and PostgreSQL alike (BIGINT, TEXT and
BOOLEAN mean the same on both for what traingate stores). Times are BIGINT UTC microseconds.
Statements may name the vault's tables as ``{vault}reports``: the prefix is ``vault.`` on SQLite
(the vault's own attached file) and ``vault_`` on PostgreSQL; ``{bytes}`` is the binary type
(BLOB, BYTEA) and ``{without_rowid}`` makes a table clustered by its primary key (SQLite's
``WITHOUT ROWID``; PostgreSQL's tables have no such clause). A migration that must rewrite rows
has a ``data`` step, run between its ``statements`` and its ``after`` statements in the same
transaction.
Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from traingate._core.timeutil import now_micros
from traingate._errors import SchemaError
from traingate._keys import SHORT_HASH
from traingate._store.db import Database

__all__ = [
    "INGEST_TABLES",
    "MIGRATIONS",
    "Migration",
    "Table",
    "current_version",
    "migrate",
]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    data: Callable[[Database], None] | None = None
    after: tuple[str, ...] = ()


_COPY_ROWS = 10_000


def _short(hex_hash: str) -> bytes:
    """A hex keyed hash of the first schema as the short keyed hash of ``KeyRing.short_hash``
    (its first bytes)."""
    return bytes.fromhex(hex_hash[: 2 * SHORT_HASH])


def _compact_event_keys(db: Database) -> None:
    """Copy ``events`` and ``report_events`` into their compact successors, page by page."""
    last = 0
    while rows := db.execute(
        "SELECT seq, event_key, body_hash, type, at, body FROM events WHERE seq > ?"
        " ORDER BY seq LIMIT ?",
        (last, _COPY_ROWS),
    ):
        db.executemany(
            "INSERT INTO events_compact (seq, event_key, body_hash, type, at, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(seq, _short(key), _short(body_hash), *rest) for seq, key, body_hash, *rest in rows],
        )
        last = int(rows[-1][0])
    after = ""
    while rows := db.execute(
        "SELECT event_key, body_hash FROM report_events WHERE event_key > ?"
        " ORDER BY event_key LIMIT ?",
        (after, _COPY_ROWS),
    ):
        db.executemany(
            "INSERT INTO report_events_compact (event_key, body_hash) VALUES (?, ?)",
            [(_short(key), _short(body_hash)) for key, body_hash in rows],
        )
        after = str(rows[-1][0])


def _compact_build_items(db: Database) -> None:
    """Copy ``build_items`` into its compact successor, page by page: item keys as their first
    16 bytes (``lineage.item_key_bytes``), record ids as their 32 bytes."""
    after: tuple[str, str] = ("", "")
    while rows := db.execute(
        "SELECT build_id, record_id, item_key, kind, messages FROM build_items"
        " WHERE build_id > ? OR (build_id = ? AND record_id > ?)"
        " ORDER BY build_id, record_id LIMIT ?",
        (after[0], after[0], after[1], _COPY_ROWS),
    ):
        db.executemany(
            "INSERT INTO build_items_compact (build_id, item_key, record_id, kind, messages)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (build_id, _short(item_key), bytes.fromhex(record_id), kind, messages)
                for build_id, record_id, item_key, kind, messages in rows
            ],
        )
        after = (str(rows[-1][0]), str(rows[-1][1]))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ledgers, conversations and messages",
        (
            # Every accepted event but feedback reports (see report_events), keyed by a keyed
            # hash of its event_id, with a keyed hash of its canonical body (idempotency).
            """CREATE TABLE events (
                seq BIGINT PRIMARY KEY,
                event_key TEXT NOT NULL UNIQUE,
                body_hash TEXT NOT NULL,
                type TEXT NOT NULL,
                at BIGINT,
                body TEXT
            )""",
            """CREATE TABLE account_plans (
                event_seq BIGINT PRIMARY KEY,
                account_id TEXT NOT NULL,
                at BIGINT NOT NULL,
                plan TEXT NOT NULL,
                organization_id TEXT,
                email TEXT NOT NULL
            )""",
            "CREATE INDEX account_plans_account ON account_plans (account_id, at)",
            """CREATE TABLE account_deletions (
                event_seq BIGINT PRIMARY KEY,
                account_id TEXT NOT NULL,
                at BIGINT NOT NULL
            )""",
            "CREATE INDEX account_deletions_account ON account_deletions (account_id)",
            """CREATE TABLE consents (
                event_seq BIGINT PRIMARY KEY,
                scope TEXT NOT NULL,
                subject TEXT NOT NULL,
                at BIGINT NOT NULL,
                granted BOOLEAN NOT NULL,
                source TEXT NOT NULL
            )""",
            "CREATE INDEX consents_subject ON consents (scope, subject, at)",
            """CREATE TABLE conversations (
                conversation_id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL,
                first_seq BIGINT NOT NULL
            )""",
            "CREATE INDEX conversations_account ON conversations (account_id)",
            """CREATE TABLE conversation_settings (
                event_seq BIGINT PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                at BIGINT NOT NULL,
                fields TEXT NOT NULL
            )""",
            "CREATE INDEX conversation_settings_conv ON conversation_settings"
            " (conversation_id, at)",
            """CREATE TABLE conversation_deletions (
                event_seq BIGINT PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                account_id TEXT NOT NULL,
                at BIGINT NOT NULL
            )""",
            "CREATE INDEX conversation_deletions_conv ON conversation_deletions (conversation_id)",
            """CREATE TABLE messages (
                message_id TEXT PRIMARY KEY,
                event_seq BIGINT NOT NULL,
                conversation_id TEXT NOT NULL,
                account_id TEXT NOT NULL,
                role TEXT NOT NULL,
                at BIGINT NOT NULL,
                content TEXT NOT NULL,
                attachments TEXT NOT NULL
            )""",
            "CREATE INDEX messages_conversation ON messages (conversation_id, at)",
            """CREATE TABLE flags (
                flag_id TEXT PRIMARY KEY,
                event_seq BIGINT NOT NULL,
                conversation_id TEXT NOT NULL,
                policy TEXT NOT NULL,
                at BIGINT NOT NULL,
                reason TEXT
            )""",
            "CREATE INDEX flags_conversation ON flags (conversation_id)",
            """CREATE TABLE flag_clears (
                event_seq BIGINT PRIMARY KEY,
                flag_id TEXT NOT NULL,
                at BIGINT NOT NULL
            )""",
            "CREATE INDEX flag_clears_flag ON flag_clears (flag_id)",
            # Keyed hashes of the feedback_ids seen: enough to refuse a reused id, nothing more.
            "CREATE TABLE feedback_keys (feedback_key TEXT PRIMARY KEY)",
            # Feedback events live apart from `events`: no seq, no time, so that their place
            # among a conversation's messages is not recorded anywhere.
            "CREATE TABLE report_events (event_key TEXT PRIMARY KEY, body_hash TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "the feedback vault",
        (
            # One row per feedback report, de-linked (docs/vault.md). report_id and dedupe_key
            # are random / keyed-hash values found nowhere in the main tables. The snapshot is
            # AES-256-GCM under its own data key, stored only wrapped by a master key of the key
            # file together with the report's exact submission and expiry instants; the columns
            # keep only their UTC days (midnight, in microseconds) for SQL prefiltering. Binary
            # values are base64 text (the same on both backends).
            """CREATE TABLE {vault}reports (
                report_id TEXT PRIMARY KEY,
                dedupe_key TEXT NOT NULL UNIQUE,
                secret_hash TEXT NOT NULL,
                submitted_day BIGINT NOT NULL,
                expires_day BIGINT NOT NULL,
                scheme TEXT NOT NULL,
                master_key_id TEXT NOT NULL,
                wrapped_key TEXT NOT NULL,
                nonce TEXT NOT NULL,
                ciphertext TEXT NOT NULL,
                -- indexes for purge and rotation, written as UNIQUE constraints because one
                -- CREATE INDEX cannot name a table of the attached SQLite schema and of
                -- PostgreSQL alike
                UNIQUE (expires_day, report_id),
                UNIQUE (master_key_id, report_id)
            )""",
        ),
    ),
    Migration(
        3,
        "dataset build lineage",
        (
            # One row per completed dataset build (docs/builds.md), written in the same
            # transaction as the rename that makes its directory appear. built_at is the wall
            # clock (an audit fact, not an input of the build).
            """CREATE TABLE builds (
                build_id TEXT PRIMARY KEY,
                built_at BIGINT NOT NULL,
                purpose TEXT NOT NULL,
                as_of BIGINT NOT NULL,
                policy_id TEXT NOT NULL,
                policy_sha256 TEXT NOT NULL,
                engine TEXT NOT NULL,
                format TEXT NOT NULL,
                path TEXT NOT NULL,
                manifest_sha256 TEXT NOT NULL,
                records BIGINT NOT NULL,
                messages BIGINT NOT NULL
            )""",
            # The items a build took, by keyed hash only: item_key names the conversation (all
            # its bases) or the feedback report; record_id is the record's id in the dataset.
            """CREATE TABLE build_items (
                build_id TEXT NOT NULL,
                record_id TEXT NOT NULL,
                item_key TEXT NOT NULL,
                kind TEXT NOT NULL,
                messages BIGINT NOT NULL,
                PRIMARY KEY (build_id, record_id)
            )""",
            "CREATE INDEX build_items_item ON build_items (item_key)",
        ),
    ),
    Migration(
        4,
        "API tokens and end-user sessions",
        (
            # Bearer tokens of the HTTP API (docs/api.md). Only a SHA-256 of each token's secret
            # is kept; token_id is the public half of the token, used to find its row.
            """CREATE TABLE api_tokens (
                token_id TEXT PRIMARY KEY,
                secret_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                name TEXT,
                created_at BIGINT NOT NULL,
                revoked_at BIGINT
            )""",
            # End-user sessions, each bound to one account, refused after expires_at; expired
            # rows are deleted when new sessions are created.
            """CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY,
                secret_hash TEXT NOT NULL,
                account_id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT
            )""",
            "CREATE INDEX sessions_expiry ON sessions (expires_at)",
        ),
    ),
    Migration(
        5,
        "hash-chained audit log",
        (
            # Append-only; each hash is an HMAC over the previous hash and the entry
            # (_audit/log.py).
            """CREATE TABLE audit_log (
                seq BIGINT PRIMARY KEY,
                at BIGINT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                details TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
            # The signed last entry, so that entries cut off the end are detected.
            """CREATE TABLE audit_head (
                id BIGINT PRIMARY KEY,
                seq BIGINT NOT NULL,
                hash TEXT NOT NULL,
                signature TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        6,
        "incognito conversations",
        (
            # Set only by a conversation's first event; consumer-2025 makes them never eligible.
            "ALTER TABLE conversations ADD COLUMN incognito BOOLEAN NOT NULL DEFAULT FALSE",
        ),
    ),
    Migration(
        7,
        "compact idempotency keys",
        # Event keys and body hashes become 16 bytes (KeyRing.short_hash) instead of 64 hex
        # characters: every accepted event adds a random key to the unique index, and at a
        # million events its pages, rewritten by every commit, were most of ingest's writes.
        (
            """CREATE TABLE events_compact (
                seq BIGINT PRIMARY KEY,
                event_key {bytes} NOT NULL UNIQUE,
                body_hash {bytes} NOT NULL,
                type TEXT NOT NULL,
                at BIGINT,
                body TEXT
            )""",
            """CREATE TABLE report_events_compact (
                event_key {bytes} PRIMARY KEY,
                body_hash {bytes} NOT NULL
            )""",
        ),
        data=_compact_event_keys,
        after=(
            "DROP TABLE events",
            "ALTER TABLE events_compact RENAME TO events",
            "DROP TABLE report_events",
            "ALTER TABLE report_events_compact RENAME TO report_events",
        ),
    ),
    Migration(
        8,
        "builds recorded in two phases",
        (
            # A build's row and items are committed before its directory is renamed into
            # place, marked pending with the build's scratch directory (locked while the build
            # lives); the mark is cleared after the rename. Readers skip pending rows;
            # build.lineage.settle_builds decides those of builds that died in between.
            "ALTER TABLE builds ADD COLUMN pending_scratch TEXT",
        ),
    ),
    Migration(
        9,
        "compact lineage",
        # A build's items become one B-tree keyed (build_id, item_key, record_id), with item
        # keys of 16 bytes (the start of the 64-hex-character keyed hash) and record ids of 32
        # bytes, instead of a table and two indexes on hex text. A build inserts its items in
        # key order (_datasets/lineage.py), so they are appended at one place of the tree instead
        # of scattered over an index of random keys that grew with every build kept. Readers
        # look items up per build (builds is small): build_id, then item_key, is the tree's
        # prefix.
        (
            """CREATE TABLE build_items_compact (
                build_id TEXT NOT NULL,
                item_key {bytes} NOT NULL,
                record_id {bytes} NOT NULL,
                kind TEXT NOT NULL,
                messages BIGINT NOT NULL,
                PRIMARY KEY (build_id, item_key, record_id)
            ){without_rowid}""",
        ),
        data=_compact_build_items,
        after=(
            "DROP TABLE build_items",
            "ALTER TABLE build_items_compact RENAME TO build_items",
        ),
    ),
    Migration(
        10,
        "events keep no body",
        # Idempotency needs an event's key and the hash of its body, never the body: the raw
        # body repeated what the ledgers and messages hold (message content, e-mail addresses)
        # until a purge erased it, and was a third of the store. Nothing reads it.
        ("ALTER TABLE events DROP COLUMN body",),
    ),
    Migration(
        11,
        "vault reports by submission day",
        # purge finds the reports that policies configured later expire early by their
        # submission day (retention.expired_submissions), as it finds the others by their
        # expiry day: without an index each of its queries read the whole vault.
        ("CREATE INDEX {vault}reports_submitted ON {vault_on}reports (submitted_day, report_id)",),
    ),
    Migration(
        12,
        "conversation modes and consent settings",
        # SPEC §5. A conversation's mode (standard, incognito or temporary) replaces the
        # incognito flag it generalizes; nothing reads the old column, so it goes.
        # Consent is kept per scope, subject and setting: rows stored before settings were
        # declared by policies are of the one setting that existed then (SPEC §2 named it),
        # which is the DEFAULT below and nothing else; every row written since names its
        # setting. A ledger is read by (scope, subject, setting, at).
        (
            "ALTER TABLE conversations ADD COLUMN mode TEXT NOT NULL DEFAULT 'standard'",
            "UPDATE conversations SET mode = 'incognito' WHERE incognito",
            "ALTER TABLE conversations DROP COLUMN incognito",
            "ALTER TABLE consents ADD COLUMN setting TEXT NOT NULL DEFAULT 'model_training'",
            "DROP INDEX consents_subject",
            "CREATE INDEX consents_ledger ON consents (scope, subject, setting, at)",
        ),
    ),
    Migration(
        13,
        "build jobs in the store",
        # Dataset builds started over the API or the console (_api/jobs.py), so that every
        # `traingate serve` process of a deployment answers for every job and a restart loses
        # none. The owner columns name the process running a job: its host and pid, where that
        # pid means something (boot id, pid namespace, start time; NULL when unknown), a token
        # of its own, and the last heartbeat; a job whose owner is gone is marked failed
        # (_store/jobs.py). requested_by is the caller's role: no account or session.
        (
            """CREATE TABLE build_jobs (
                job_id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                purpose TEXT NOT NULL,
                as_of BIGINT NOT NULL,
                format TEXT NOT NULL,
                engine TEXT NOT NULL,
                path TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                messages_done BIGINT NOT NULL DEFAULT 0,
                messages_total BIGINT,
                build_id TEXT,
                manifest TEXT,
                error TEXT,
                owner_host TEXT NOT NULL,
                owner_pid BIGINT NOT NULL,
                owner_process TEXT,
                owner_token TEXT NOT NULL,
                heartbeat_at BIGINT NOT NULL
            )""",
            "CREATE INDEX build_jobs_created ON build_jobs (created_at)",
            "CREATE INDEX build_jobs_state ON build_jobs (state)",
            "CREATE INDEX build_jobs_build ON build_jobs (build_id)",
        ),
    ),
    Migration(
        14,
        "lineage in Parquet beside each dataset",
        # A build's items go to a Parquet file sorted by item key beside its dataset
        # (_datasets/lineage_file.py), no longer to build_items (one row per record per build:
        # 580M rows a full build at scale); its row names the file and its sha256. Builds
        # recorded before keep their items in build_items (NULL lineage_path), still read.
        (
            "ALTER TABLE builds ADD COLUMN lineage_path TEXT",
            "ALTER TABLE builds ADD COLUMN lineage_sha256 TEXT",
        ),
    ),
    Migration(
        15,
        "audit counts per day",
        # What the audit log counts per UTC day instead of an entry per act (reads and
        # deletions of reports by receipt holders, reports end users submit; _audit/actions.py
        # DAY_COUNTED): one row per day, actor, action and count, upserted as it happens, so a
        # killed server loses none; a day's rows become one chain entry once the day is over.
        (
            "CREATE TABLE audit_day_counts ("
            " day TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, name TEXT NOT NULL,"
            " n BIGINT NOT NULL, PRIMARY KEY (day, actor, action, name))",
        ),
    ),
    Migration(
        16,
        "the shape of a build job",
        # The rows' shape a job builds (_datasets/shapes.py), so that every process answers
        # with it before the manifest exists; jobs queued before it built records.
        ("ALTER TABLE build_jobs ADD COLUMN shape TEXT NOT NULL DEFAULT 'records'",),
    ),
    Migration(
        17,
        "incremental builds",
        # A build's watermark: the highest event seq its read snapshot saw (writers commit in
        # seq order under the store's write lock, so the snapshot held every event up to it
        # and none after). An incremental build (_datasets/incremental.py) reads what changed
        # since a base build as the rows above its watermark: messages by event_seq, hence
        # the index. NULL for builds recorded before (they cannot be a base) and for builds
        # whose messages came from a lake. A job keeps the base it was asked to start from.
        (
            "ALTER TABLE builds ADD COLUMN watermark BIGINT",
            "CREATE INDEX messages_seq ON messages (event_seq)",
            "ALTER TABLE build_jobs ADD COLUMN since TEXT",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Table:
    """A table ingest appends to, with its columns as the migrations above leave them, in the
    order its rows give them: the one place the order is written (rows are made from it,
    ``traingate._ingest.incoming``, and inserted under it, ``Store.insert``)."""

    name: str
    columns: tuple[str, ...]

    def row(self, **values: object) -> tuple[object, ...]:
        """A row from its values named by column, every column once."""
        if values.keys() != set(self.columns):
            raise ValueError(f"a row of {self.name} names {sorted(values)}, not {self.columns}")
        return tuple(values[column] for column in self.columns)


EVENTS = Table("events", ("seq", "event_key", "body_hash", "type", "at"))
ACCOUNT_PLANS = Table(
    "account_plans", ("event_seq", "account_id", "at", "plan", "organization_id", "email")
)
ACCOUNT_DELETIONS = Table("account_deletions", ("event_seq", "account_id", "at"))
CONSENTS = Table(
    "consents", ("event_seq", "scope", "subject", "setting", "at", "granted", "source")
)
CONVERSATIONS = Table("conversations", ("conversation_id", "account_id", "first_seq", "mode"))
CONVERSATION_SETTINGS = Table(
    "conversation_settings", ("event_seq", "conversation_id", "at", "fields")
)
CONVERSATION_DELETIONS = Table(
    "conversation_deletions", ("event_seq", "conversation_id", "account_id", "at")
)
MESSAGES = Table(
    "messages",
    (
        "message_id",
        "event_seq",
        "conversation_id",
        "account_id",
        "role",
        "at",
        "content",
        "attachments",
    ),
)
FLAGS = Table("flags", ("flag_id", "event_seq", "conversation_id", "policy", "at", "reason"))
FLAG_CLEARS = Table("flag_clears", ("event_seq", "flag_id", "at"))
FEEDBACK_KEYS = Table("feedback_keys", ("feedback_key",))
REPORT_EVENTS = Table("report_events", ("event_key", "body_hash"))
# Every table ingest appends to, in the order one transaction writes them.
INGEST_TABLES: tuple[Table, ...] = (
    EVENTS,
    ACCOUNT_PLANS,
    ACCOUNT_DELETIONS,
    CONSENTS,
    CONVERSATIONS,
    CONVERSATION_SETTINGS,
    CONVERSATION_DELETIONS,
    MESSAGES,
    FLAGS,
    FLAG_CLEARS,
    FEEDBACK_KEYS,
    REPORT_EVENTS,
)


def _ensure_table(db: Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    )


def current_version(db: Database) -> int:
    _ensure_table(db)
    rows = db.execute("SELECT MAX(version) FROM schema_migrations")
    return int(rows[0][0] or 0)


def migrate(db: Database, *, target: int | None = None) -> list[int]:
    """Apply the migrations the database lacks (up to ``target``); returns the versions applied."""
    known = MIGRATIONS[-1].version
    target = known if target is None else target
    applied: list[int] = []
    with db.transaction():
        version = current_version(db)
        if version > known:
            raise SchemaError(
                f"the database schema is at version {version}, newer than this traingate "
                f"knows ({known}); upgrade traingate"
            )
        for migration in MIGRATIONS:
            if version < migration.version <= target:
                names = {
                    "vault": db.vault_prefix,
                    # the table a CREATE INDEX names: SQLite qualifies only the index
                    "vault_on": "" if db.dialect == "sqlite" else db.vault_prefix,
                    "bytes": db.bytes_type,
                    "without_rowid": " WITHOUT ROWID" if db.dialect == "sqlite" else "",
                }
                db.script([s.format(**names) for s in migration.statements])
                if migration.data is not None:
                    migration.data(db)
                db.script([s.format(**names) for s in migration.after])
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now_micros()),
                )
                applied.append(migration.version)
    return applied
