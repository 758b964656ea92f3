"""``Traingate``: the one object the CLI, the HTTP API and library users talk to.

It opens the store (migrating it), the key file and the policy, and offers each operation as
one method. The edges (cli/, api/, web/) parse, call one of these methods, and format.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from traingate._audit.actions import (
    SYSTEM,
    DayCounts,
    IngestAuditor,
    mentions,
    subject_key,
    verify_summary,
)
from traingate._audit.log import AuditEntry, AuditLog
from traingate._core.policy import (
    Decision,
    Policy,
    PolicySet,
    explain_conversation,
    load_policy_set,
)
from traingate._core.report import Snapshot
from traingate._core.timeutil import format_instant, now_micros, utc_date
from traingate._errors import (
    AccessDeniedError,
    BuildError,
    ConfigError,
    EventError,
    NotFoundError,
    PolicyError,
)
from traingate._ingest import (
    DEFAULT_BATCH,
    IngestSummary,
    LakeArchive,
    MessageArchive,
    ingest_lines,
)
from traingate._keys import KeyRing, load_or_create_keys
from traingate._settings import Settings
from traingate._store.db import connect
from traingate._store.store import Store
from traingate._vault.vault import ReportInfo, Vault


class ReceiptTally(Protocol):
    """Where a server counts receipt holders' reads and deletions (``api.usage.ReceiptUses``)."""

    def count(self, tg: Traingate, kind: str) -> None: ...


if TYPE_CHECKING:
    from traingate._access.credentials import (
        Credentials,
        IssuedSession,
        IssuedToken,
        Principal,
        TokenInfo,
    )
    from traingate._datasets.builder import BuildResult
    from traingate._datasets.diff import PolicyDiff
    from traingate._datasets.lake import LakeExport
    from traingate._datasets.lineage import BuildRow, Lineage
    from traingate._datasets.progress import Progress
    from traingate._datasets.verify import Verification
    from traingate._privacy import ConversationView, PrivacyReport
    from traingate._retention.rules import PurgeCounts
    from traingate._retention.status import RetentionStatus
    from traingate._vault.rotation import RotationResult

__all__ = ["Explanation", "MessageExplanation", "Traingate"]


@dataclass(frozen=True, slots=True)
class MessageExplanation:
    message_id: str
    at: int
    role: str
    decision: Decision
    policy: Policy  # the policy in force at the message's time, which decided it


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why each message of one conversation may or may not serve a purpose as of a time.
    ``policy`` is the policy in force at as-of; each message names the one that decided it."""

    conversation_id: str
    purpose: str
    as_of: int
    policy: Policy
    messages: tuple[MessageExplanation, ...]

    def to_dict(self) -> dict[str, Any]:
        def rules(m: MessageExplanation) -> list[dict[str, str]]:
            out = []
            for rule_id in m.decision.rule_ids:
                spec_rule, text = m.policy.rule_text(rule_id)
                out.append({"id": rule_id, "rule": spec_rule, "text": text})
            return out

        return {
            "conversation_id": self.conversation_id,
            "purpose": self.purpose,
            "as_of": format_instant(self.as_of),
            "policy": {"id": self.policy.id, "sha256": self.policy.sha256},
            "messages": [
                {
                    "message_id": m.message_id,
                    "role": m.role,
                    "at": format_instant(m.at),
                    "eligible": m.decision.eligible,
                    "basis": m.decision.basis,
                    "reasons": list(m.decision.reasons) if not m.decision.eligible else [],
                    "rules": rules(m),
                    "policy": m.policy.identity(),
                }
                for m in self.messages
            ],
        }


class Traingate:
    """Open with ``Traingate.open(settings)``; close with ``close()`` or a ``with`` block."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        policy: Policy | PolicySet,
        keys: KeyRing,
        key_file: Path | None = None,
        archive: MessageArchive | None = None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.policies = PolicySet.of(policy)  # every item is decided by the one in force then
        self.keys = keys
        self.key_file = key_file  # where rotation writes the key ring (None: rotation refused)
        self.archive = archive  # where reports' messages the store does not hold are read

    @classmethod
    def open(cls, settings: Settings) -> Traingate:
        policies = load_policy_set(settings.policy)
        keys = load_or_create_keys(settings.key_file)
        db = connect(settings.db_url)
        try:
            store = Store.open(db, keys=keys)
            vault = Vault(db, keys=keys, policy=policies)
        except BaseException:
            db.close()
            raise
        archive = None if settings.lake is None else LakeArchive.at(str(settings.lake))
        app = cls(
            store=store,
            vault=vault,
            policy=policies,
            keys=keys,
            key_file=settings.key_file,
            archive=archive,
        )
        try:
            app.settle_builds()
        except BaseException:
            app.close()
            raise
        return app

    @property
    def policy(self) -> Policy:
        """The policy in force now (what the pages describe); decisions use ``policies``."""
        return self.policies.in_force(now_micros())

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Traingate:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def audit_log(self) -> AuditLog:
        """The audit log (docs/audit.md); every method below that changes or reveals data
        appends to it, naming ``actor``."""
        return AuditLog(self.store.db, keys=self.keys)

    def ingest(
        self,
        lines: Iterable[str],
        *,
        batch_size: int = DEFAULT_BATCH,
        workers: int | None = None,
        actor: str = SYSTEM,
    ) -> IngestSummary:
        """Ingest JSONL event lines (SPEC §2); returns the SPEC §4 summary. ``workers``: parse
        processes for the lines past the first 20,000 (default: a core less than the machine
        has, at most four; 0: none)."""
        return ingest_lines(
            store=self.store,
            sink=self.vault,
            policy=self.policies,
            lines=lines,
            batch_size=batch_size,
            workers=workers,
            observer=IngestAuditor(log=self.audit_log, keys=self.keys, actor=actor),
            archive=self.archive,
        )

    def explain(
        self, *, conversation_id: str, purpose: str, as_of: int | None = None
    ) -> Explanation:
        """Each message of a conversation under bases 2-4, with the rules that decided, each
        under the policy in force at its time."""
        self.policies.require_purpose(purpose)
        when = now_micros() if as_of is None else as_of
        facts = self.store.conversation_facts(conversation_id)
        policies = self.policies
        decided = explain_conversation(policy=policies, facts=facts, purpose=purpose, as_of=when)
        return Explanation(
            conversation_id=conversation_id,
            purpose=purpose,
            as_of=when,
            policy=policies.in_force(when),
            messages=tuple(
                MessageExplanation(
                    message_id=m.message_id,
                    at=m.at,
                    role=m.role,
                    decision=d,
                    policy=policies.in_force(m.at),
                )
                for m, d in decided
            ),
        )

    # -- policies in force (docs/policy.md) ---------------------------------------------------

    def policy_show(self, *, name: str | None = None) -> dict[str, Any]:
        """The policies in force, each with its range, bases, exclusions and rules; or one
        policy: an id in force, a bundled id, or a policy file (its range when in force)."""
        ranges = {(r["id"], r["version"]): r for r in self.policies.ranges()}
        if name is None:
            return {
                "in_force": list(ranges.values()),
                "policies": [_policy_table(p) for p in self.policies.policies],
            }
        try:
            policy = self.policies.named(name)
        except PolicyError:
            policy = load_policy_set(name).policies[0]
        in_force = ranges.get((policy.id, policy.version))
        in_force = in_force if in_force and in_force["sha256"] == policy.sha256 else None
        return {**_policy_table(policy), "in_force": in_force}

    def policy_diff(
        self,
        *,
        a: str,
        b: str,
        as_of: int | None = None,
        purposes: Iterable[str] = (),
        engine: str = "duckdb",
        actor: str = SYSTEM,
    ) -> PolicyDiff:
        """Which records of a build as of ``as_of`` (default now) would enter, leave or change
        if the policies ``b`` replaced ``a`` (each a --policy value: ids or files, with
        optional @effective dates), with each changed item's rules on both sides; for
        ``purposes`` (default every purpose both know). Audited: it reads the vault."""
        from traingate._datasets.diff import diff_policies
        from traingate._datasets.engines import engine_named

        first, second = load_policy_set(a), load_policy_set(b)
        chosen = list(purposes) or [p for p in first.purposes if p in second.purposes]
        result = diff_policies(
            store=self.store,
            vault=self.vault,
            keys=self.keys,
            engine=engine_named(engine),
            a=first,
            b=second,
            purposes=chosen,
            as_of=now_micros() if as_of is None else as_of,
        )
        self.audit_log.append(actor=actor, action="policy.diff", details=result.summary())
        return result

    # -- the feedback vault and retention (docs/vault.md) ---------------------------------------

    def feedback_show(
        self, receipt: str, *, actor: str = SYSTEM, tally: ReceiptTally | None = None
    ) -> tuple[ReportInfo, Snapshot]:
        """The report a receipt names, decrypted. Raises ReceiptError. Audited without the
        report or the reader (docs/audit.md): counted by ``tally`` (the server's per-day
        counts) or, without one, as a ``vault.uses`` entry of one read today by ``actor``."""
        info, snapshot = self.vault.show(receipt)
        self._count_use("reads", actor=actor, tally=tally)
        return info, snapshot

    def _count_use(self, kind: str, *, actor: str, tally: ReceiptTally | None) -> None:
        if tally is not None:
            tally.count(self, kind)
            return
        counts = {"reads": 0, "deletions": 0, kind: 1}
        self.audit_log.append(
            actor=actor,
            action="vault.uses",
            details={"day": utc_date(now_micros()), **counts},
        )

    def report_info(self, receipt: str) -> ReportInfo:
        """Only the times and key id of the report a receipt names (what its submitter is
        told; not a read of its content). Raises ReceiptError."""
        return self.vault.show(receipt)[0]

    def feedback_delete(
        self, receipt: str, *, actor: str = SYSTEM, tally: ReceiptTally | None = None
    ) -> ReportInfo:
        """Delete (crypto-shred) the report a receipt names. Raises ReceiptError. Counted as
        ``feedback_show`` is: no report id, no reader, the day alone."""
        info = self.vault.delete(receipt)
        self.vault.checkpoint()
        self._count_use("deletions", actor=actor, tally=tally)
        return info

    def rotate_keys(self, *, retire_old: bool = False, actor: str = SYSTEM) -> RotationResult:
        """Rotate to a new master key (saved to the key file first), re-wrap every data key
        under it, and with ``retire_old`` destroy the older master keys."""
        from traingate._vault.rotation import rotate_master_key

        if self.key_file is None:
            raise ConfigError("no key file to rotate: open traingate with settings")
        result, ring = rotate_master_key(
            vault=self.vault, key_file=self.key_file, retire_old=retire_old
        )
        self.keys = ring
        self.store.keys = ring
        self.vault = Vault(self.store.db, keys=ring, policy=self.policies)
        self.audit_log.append(actor=actor, action="keys.rotate", details=result.to_dict())
        return result

    def purge(self, *, as_of: int | None = None, actor: str = SYSTEM) -> PurgeCounts:
        """Delete expired reports and messages whose content expired (SPEC §5), and
        hard-delete data deleted more than ``deleted_after`` (30 days by default) before
        ``as_of`` (default: now, the one place the wall clock decides); the audit entry
        (action ``purge``, the counts) commits with the deletions."""
        from traingate._retention.rules import purge

        def audit(counts: PurgeCounts) -> None:
            self.audit_log.append(actor=actor, action="purge", details=counts.to_dict())

        when = now_micros() if as_of is None else as_of
        return purge(store=self.store, vault=self.vault, as_of=when, observer=audit)

    # -- the HTTP API: credentials, privacy, events a user starts (docs/api.md) -----------------

    @property
    def credentials(self) -> Credentials:
        from traingate._access.credentials import Credentials

        return Credentials(self.store.db)

    def create_token(
        self, *, role: str, name: str | None = None, actor: str = SYSTEM
    ) -> IssuedToken:
        """A new API bearer token with ``role``; its secret is shown only in the result."""
        with self.store.db.transaction():
            issued = self.credentials.create_token(role=role, name=name, now=now_micros())
            self.audit_log.append(
                actor=actor,
                action="token.create",
                details={"token_id": issued.token_id, "role": role, "name": name},
            )
        return issued

    def tokens(self) -> list[TokenInfo]:
        """Every API token, live or revoked (ids, roles, names, times; never a secret)."""
        return self.credentials.tokens()

    def revoke_token(self, *, token_id: str, actor: str = SYSTEM) -> TokenInfo:
        """Revoke a token at once (every later request with it is 401); audited as
        ``token.revoke``. Raises NotFoundError when no live token has that id."""
        with self.store.db.transaction():
            if not self.credentials.revoke_token(token_id=token_id, now=now_micros()):
                raise NotFoundError(f"no live token has the id {token_id!r}")
            self.audit_log.append(
                actor=actor, action="token.revoke", details={"token_id": token_id}
            )
        return next(t for t in self.tokens() if t.token_id == token_id)

    def record_token_use(
        self, *, token_id: str, role: str | None, method: str, route: str, uses: int = 1
    ) -> None:
        """Audit ``uses`` calls of a route (its template, never a path) with a token."""
        self.audit_log.append(
            actor=f"token:{token_id}",
            action="token.use",
            details={
                "token_id": token_id,
                "role": role,
                "method": method,
                "route": route,
                "uses": uses,
            },
        )

    def create_session(
        self, *, account_id: str, ttl: int | None = None, actor: str = SYSTEM
    ) -> IssuedSession:
        """A new end-user session bound to a known account (default: 24 hours). Raises
        NotFoundError for an account the store has no plan for, AccessDeniedError for a
        deleted account."""
        from traingate._access.credentials import DEFAULT_SESSION_TTL

        if not self.store.db.execute(
            "SELECT 1 FROM account_plans WHERE account_id = ? LIMIT 1", (account_id,)
        ):
            raise NotFoundError(f"account {account_id!r} is not in the store")
        if self.store.account_deletions(account_id):
            raise AccessDeniedError(f"account {account_id!r} is deleted")
        with self.store.db.transaction():
            issued = self.credentials.create_session(
                account_id=account_id,
                ttl=DEFAULT_SESSION_TTL if ttl is None else ttl,
                now=now_micros(),
            )
            self.audit_log.append(
                actor=actor,
                action="session.create",
                details={
                    "session_id": issued.session_id,
                    "expires_at": format_instant(issued.expires_at),
                },
            )
        return issued

    def authenticate(self, credential: str) -> Principal:
        """The caller a bearer token or session credential names. Raises AuthenticationError."""
        return self.credentials.verify(credential, now=now_micros())

    def revoke_session(self, *, session_id: str) -> None:
        self.credentials.revoke_session(session_id=session_id, now=now_micros())

    def find_conversations(self, text: str, *, limit: int = 50) -> list[dict[str, str]]:
        """Conversations whose id starts with ``text`` or whose account is ``text`` (the
        console's search), by id, at most ``limit``: id, account and mode each."""
        text = text.strip()
        if not text:
            return []
        return [
            {"conversation_id": conv, "account_id": account, "mode": mode}
            for conv, account, mode in self.store.find_conversations(text, limit=limit)
        ]

    def conversation_owner(self, conversation_id: str) -> str:
        """The account that first named the conversation. Raises NotFoundError."""
        return self.store.conversation_owner(conversation_id)

    def conversation(self, *, conversation_id: str, as_of: int | None = None) -> ConversationView:
        """A conversation's messages and settings as of a time (default: now)."""
        from traingate._privacy import conversation_view

        when = now_micros() if as_of is None else as_of
        return conversation_view(store=self.store, conversation_id=conversation_id, as_of=when)

    def privacy(self, *, account_id: str, as_of: int | None = None) -> PrivacyReport:
        """The account's answer to "Is my data used for model training?", with evidence."""
        self.settle_builds()
        from traingate._privacy import account_privacy

        when = now_micros() if as_of is None else as_of
        return account_privacy(
            store=self.store,
            policy=self.policies,
            keys=self.keys,
            account_id=account_id,
            as_of=when,
        )

    def _ingest_one(self, event: dict[str, Any], *, actor: str) -> IngestSummary:
        summary = self.ingest([json.dumps(event)], actor=actor)
        if summary.rejected:
            raise EventError(summary.errors[0].error, event_id=event["event_id"])
        return summary

    def record_consent(
        self,
        *,
        account_id: str,
        granted: bool,
        source: str = "privacy_settings",
        actor: str = SYSTEM,
    ) -> int:
        """Write the account's own training consent change (a consent.updated event, at the
        wall clock's now, for the setting of the account-scope consent basis of the policy in
        force now) through ingest; returns its time."""
        at = now_micros()
        setting = self.policies.in_force(at).account_setting()
        if setting is None:
            raise PolicyError(
                f"policy {self.policies.in_force(at).label} has no account-scope consent: "
                "an account cannot change a training setting of its own"
            )
        self._ingest_one(
            {
                "type": "consent.updated",
                "event_id": f"tg-consent-{secrets.token_hex(16)}",
                "at": format_instant(at),
                "scope": "account",
                "account_id": account_id,
                "setting": setting,
                "granted": granted,
                "source": source,
            },
            actor=actor,
        )
        return at

    def delete_conversation(
        self, *, conversation_id: str, account_id: str, actor: str = SYSTEM
    ) -> int:
        """Write a conversation.deleted event (at now) through ingest; returns its time."""
        at = now_micros()
        self._ingest_one(
            {
                "type": "conversation.deleted",
                "event_id": f"tg-delete-{secrets.token_hex(16)}",
                "at": format_instant(at),
                "conversation_id": conversation_id,
                "account_id": account_id,
            },
            actor=actor,
        )
        return at

    # -- dataset builds (docs/builds.md) ----------------------------------------------------

    def build_dataset(
        self,
        *,
        purpose: str,
        out: Path,
        as_of: int | None = None,
        format: str = "parquet",
        engine: str = "duckdb",
        progress: Progress | None = None,
        actor: str = SYSTEM,
        messages: str | None = None,
        spark_master: str | None = None,
        shape: str = "records",
        since: str | None = None,
    ) -> BuildResult:
        """Build the dataset of everything ``purpose`` may use as of ``as_of`` (default now)
        into the new directory ``out``: records, signed manifest, lineage, then its audit
        entry. BuildError when ``out`` exists. ``messages`` reads the messages from a lake
        (``parquet:PATH``, docs/lake.md) instead of the store; ``spark_master`` is the master
        of ``engine="spark"``; ``shape`` the rows' shape (_datasets/shapes.py); ``since`` the id of
        an earlier build to start from (an incremental build: _datasets/incremental.py)."""
        from traingate._datasets.builder import build_dataset
        from traingate._datasets.engines import engine_named
        from traingate._datasets.engines.base import BuildRequest
        from traingate._datasets.shapes import as_shape
        from traingate._datasets.writer import as_format

        self.policies.require_purpose(purpose)
        source = None
        if messages is not None:  # only then: the lake module imports pyarrow.dataset
            from traingate._datasets.lake import message_source

            source = message_source(messages)
        if source is not None and engine == "scalar":
            raise BuildError("the scalar engine reads the store's messages only; use duckdb")
        request = BuildRequest(
            policy=self.policies,
            purpose=purpose,
            as_of=now_micros() if as_of is None else as_of,
            messages=source,
        )

        incremental = None
        if since is not None:
            from traingate._datasets.incremental import Since, load_base

            if engine != "duckdb" or source is not None:
                raise BuildError("--since builds with the duckdb engine from the store only")
            self.settle_builds()
            base = load_base(
                self.store.db, build_id=since, request=request, signing_key=self.keys.signing_key
            )
            incremental = Since(base)

        def audit(result: BuildResult) -> None:
            details = _build_details(result)
            if source is not None:
                details["messages"] = source.name
            if since is not None:
                details["since"] = since
            self.audit_log.append(actor=actor, action="dataset.build", details=details)

        self.settle_builds()
        from traingate._datasets.openlineage_emit import open_build_lineage  # docs/openlineage.md

        lineage = open_build_lineage(  # None unless OpenLineage is configured
            db=self.store.db,
            policies=self.policies,
            purpose=purpose,
            as_of=request.as_of,
            engine=engine,
            format=format,
            out=out,
            lake=None if source is None else source.root,
        )
        if lineage is not None:
            lineage.start()
        try:
            try:
                result = build_dataset(
                    store=self.store,
                    vault=self.vault,
                    keys=self.keys,
                    request=request,
                    engine=engine_named(engine, spark_master=spark_master),
                    out=out,
                    format=as_format(format),
                    shape=as_shape(shape),
                    progress=progress,
                    on_complete=audit,
                    since=incremental,
                )
            except OSError as exc:  # --out where nothing may be written (/proc/x, read-only)
                where = exc.filename if exc.filename is not None else out
                raise BuildError(
                    f"cannot write the dataset {out}: {exc.strerror or exc} ({where})"
                ) from exc
        except BaseException as exc:  # FAIL names the error the caller gets, unchanged
            if lineage is not None:
                lineage.fail(exc)
            raise
        if lineage is not None:
            lineage.complete(result)
        return result

    def settle_builds(self) -> None:
        """Settle the lineage of builds killed between recording it and completing it
        (``build.lineage.settle_builds``): a completed one gets its ``dataset.build`` audit
        entry then, marked ``settled``. Runs when the store is opened and before reads of
        lineage; cheap when there is nothing to settle."""
        if not self.store.db.execute(
            "SELECT 1 FROM builds WHERE pending_scratch IS NOT NULL LIMIT 1"
        ):  # the common case, without importing the build modules
            return
        from traingate._datasets.builder import BuildResult
        from traingate._datasets.lineage import settle_builds

        def audit(build: BuildRow) -> None:
            manifest = json.loads((Path(build.path) / "manifest.json").read_text("utf-8"))
            result = BuildResult(build_id=build.build_id, path=Path(build.path), manifest=manifest)
            details = {**_build_details(result), "settled": True}
            self.audit_log.append(actor=SYSTEM, action="dataset.build", details=details)

        settle_builds(self.store.db, on_complete=audit)

    def export_lake(
        self, *, out: Path, as_of: int | None = None, actor: str = SYSTEM
    ) -> LakeExport:
        """Write the store's messages (those with ``at`` <= ``as_of`` when given) as a Parquet
        lake at the new directory ``out`` (docs/lake.md), atomically; audited."""
        from traingate._datasets.lake import export_lake

        result = export_lake(db=self.store.db, out=out, as_of=as_of)
        details: dict[str, Any] = {**result.to_dict(), "as_of": None}
        if as_of is not None:
            details["as_of"] = format_instant(as_of)
        self.audit_log.append(actor=actor, action="lake.export", details=details)
        return result

    def verify_dataset(self, *, path: Path) -> Verification:
        """Recompute a dataset's files, counts and signature against its manifest."""
        from traingate._datasets.verify import verify_dataset

        return verify_dataset(path, signing_key=self.keys.signing_key)

    def lineage(self, *, conversation_id: str | None = None, receipt: str | None = None) -> Lineage:
        """The builds holding data of a conversation, or of the feedback report of a receipt."""
        self.settle_builds()
        from traingate._datasets.lineage import (
            conversation_lineage,
            receipt_record_key,
            report_lineage,
        )

        if (conversation_id is None) == (receipt is None):
            raise ConfigError("name exactly one item: a conversation id or a receipt")
        signing_key = self.keys.signing_key
        if conversation_id is not None:
            return conversation_lineage(
                self.store.db, signing_key=signing_key, conversation_id=conversation_id
            )
        assert receipt is not None
        record_key = receipt_record_key(self.keys, receipt)
        return report_lineage(self.store.db, signing_key=signing_key, record_key=record_key)

    # -- completed builds, for the API and the admin console (docs/api.md) ---------------------

    def recorded_builds(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Completed builds recorded by lineage, newest first."""
        self.settle_builds()
        from traingate._api.jobs import recorded_builds

        return recorded_builds(self.store.db, limit=limit)

    def recorded_build(self, *, build_id: str) -> dict[str, Any]:
        """One completed build with its manifest. Raises NotFoundError."""
        self.settle_builds()
        from traingate._api.jobs import recorded_build

        return recorded_build(self.store.db, build_id)

    # -- the web pages (docs/web.md) ---------------------------------------------------------

    def submit_feedback(
        self,
        *,
        account_id: str,
        conversation_id: str,
        message_id: str,
        rating: str,
        comment: str | None = None,
        categories: Iterable[str] = (),
        actor: str = SYSTEM,
    ) -> tuple[str, ReportInfo]:
        """Write the account's feedback.submitted event (at now) through ingest; returns the
        receipt of the vaulted report and its times. Raises EventError when it is rejected."""
        summary = self._ingest_one(
            {
                "type": "feedback.submitted",
                "event_id": f"tg-feedback-{secrets.token_hex(16)}",
                "at": format_instant(now_micros()),
                "feedback_id": f"tg-fb-{secrets.token_hex(16)}",
                "account_id": account_id,
                "conversation_id": conversation_id,
                "message_id": message_id,
                "rating": rating,
                "comment": comment,
                "categories": list(categories),
            },
            actor=actor,
        )
        receipt = summary.receipts[0][2]
        return receipt, self.report_info(receipt)

    def retention_status(self, *, as_of: int | None = None) -> RetentionStatus:
        """The retention rules, what expires when, what the next purge deletes, and the last
        purge."""
        from traingate._retention.status import retention_status

        when = now_micros() if as_of is None else as_of
        return retention_status(self.store.db, as_of=when, policy=self.policies, store=self.store)

    def purge_audited(self, *, actor: str, as_of: int | None = None) -> PurgeCounts:
        """``purge`` naming ``actor`` (every purge is audited; kept for the pages)."""
        return self.purge(as_of=as_of, actor=actor)

    # -- the audit log (docs/audit.md) -----------------------------------------------------

    def audit_verify(self, *, expect_head: tuple[int, str | None] | None = None) -> dict[str, Any]:
        """Check the whole chain; the summary ``traingate audit verify`` prints (``ok``,
        counts by action, the head, each problem with its seq and kind). ``expect_head``
        (seq, hash or None), a head recorded earlier, must still be reached: without it an
        empty log with no head cannot tell "never written" from "wiped", and says so."""
        entries, head, problems = self.audit_log.inspect(expect=expect_head)
        pending = DayCounts(self.audit_log).pending()  # counted, not sealed yet
        return verify_summary(entries, problems, head, pending=pending)

    def audit_entries(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        accounts: Iterable[str] = (),
        organizations: Iterable[str] = (),
    ) -> list[AuditEntry]:
        """Entries after ``after`` in order; with ``accounts`` or ``organizations``, only
        those naming one of them (by their keyed hash)."""
        keys = [subject_key(self.keys, scope="account", subject=a) for a in accounts]
        keys += [subject_key(self.keys, scope="organization", subject=o) for o in organizations]
        entries = self.audit_log.entries(after=after, limit=None if keys else limit)
        if not keys:
            return list(entries)
        found = [entry for entry in entries if mentions(entry, keys)]
        return found if limit is None else found[:limit]


def _policy_table(policy: Policy) -> dict[str, Any]:
    """A policy as ``policy show`` prints it: every key of its file, parameters that do not
    apply to a basis's kind left out, and the sha256 of the file."""
    return policy.model_dump(mode="json", exclude_none=True)


def _build_details(result: BuildResult) -> dict[str, Any]:
    """A completed build, as its audit entry records it."""
    import hashlib

    manifest = result.manifest
    data = (result.path / "manifest.json").read_bytes()
    return {
        "build_id": result.build_id,
        "purpose": manifest["purpose"],
        "as_of": manifest["as_of"],
        "policy": manifest.get("policy"),
        "engine": manifest.get("engine"),
        "record_format": manifest.get("record_format"),
        "path": str(result.path),
        "counts": manifest["counts"],
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
    }
