"""``Traingate``: the one object the CLI, the HTTP API and library users talk to.

It opens the store (migrating it), the key file and the policy, and offers each operation as
one method. The edges (cli.py, api/, web/) parse, call one of these methods, and format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from traingate.errors import ConfigError
from traingate.ingest import IngestSummary, ingest_lines
from traingate.keys import KeyRing, load_or_create_keys
from traingate.policy import Decision, Policy, default_policy, explain_conversation, load_policy
from traingate.settings import Settings
from traingate.store.db import connect
from traingate.store.store import Store
from traingate.timeutil import format_instant, now_micros
from traingate.vault.snapshot import Snapshot
from traingate.vault.vault import ReportInfo, Vault

if TYPE_CHECKING:
    from traingate.build.builder import BuildResult
    from traingate.build.lineage import Lineage
    from traingate.build.progress import Progress
    from traingate.build.verify import Verification
    from traingate.retention import PurgeCounts
    from traingate.vault.rotation import RotationResult

__all__ = ["Explanation", "MessageExplanation", "Traingate"]


@dataclass(frozen=True, slots=True)
class MessageExplanation:
    message_id: str
    at: int
    role: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why each message of one conversation may or may not serve a purpose as of a time."""

    conversation_id: str
    purpose: str
    as_of: int
    policy: Policy
    messages: tuple[MessageExplanation, ...]

    def to_dict(self) -> dict[str, Any]:
        def rules(decision: Decision) -> list[dict[str, str]]:
            out = []
            for rule_id in decision.rule_ids:
                spec_rule, text = self.policy.rule_text(rule_id)
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
                    "rules": rules(m.decision),
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
        policy: Policy,
        keys: KeyRing,
        key_file: Path | None = None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.policy = policy
        self.keys = keys
        self.key_file = key_file  # where rotation writes the key ring (None: rotation refused)

    @classmethod
    def open(cls, settings: Settings) -> Traingate:
        policy = load_policy(settings.policy_file) if settings.policy_file else default_policy()
        keys = load_or_create_keys(settings.key_file)
        db = connect(settings.db_url)
        try:
            store = Store.open(db, keys=keys)
            vault = Vault(db, keys=keys, policy=policy)
        except BaseException:
            db.close()
            raise
        return cls(store=store, vault=vault, policy=policy, keys=keys, key_file=settings.key_file)

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

    def ingest(self, lines: Iterable[str], *, batch_size: int = 5000) -> IngestSummary:
        """Ingest JSONL event lines (SPEC §2); returns the SPEC §4 summary."""
        return ingest_lines(
            store=self.store,
            sink=self.vault,
            policy=self.policy,
            lines=lines,
            batch_size=batch_size,
        )

    def explain(
        self, *, conversation_id: str, purpose: str, as_of: int | None = None
    ) -> Explanation:
        """Each message of a conversation under bases 2-4, with the rules that decided."""
        self.policy.require_purpose(purpose)
        when = now_micros() if as_of is None else as_of
        facts = self.store.conversation_facts(conversation_id)
        decided = explain_conversation(policy=self.policy, facts=facts, purpose=purpose, as_of=when)
        return Explanation(
            conversation_id=conversation_id,
            purpose=purpose,
            as_of=when,
            policy=self.policy,
            messages=tuple(
                MessageExplanation(message_id=m.message_id, at=m.at, role=m.role, decision=d)
                for m, d in decided
            ),
        )

    # -- the feedback vault and retention (docs/vault.md) ---------------------------------------

    def feedback_show(self, receipt: str) -> tuple[ReportInfo, Snapshot]:
        """The report a receipt names, decrypted. Raises ReceiptError."""
        return self.vault.show(receipt)

    def feedback_delete(self, receipt: str) -> ReportInfo:
        """Delete (crypto-shred) the report a receipt names. Raises ReceiptError."""
        return self.vault.delete(receipt)

    def rotate_keys(self, *, retire_old: bool = False) -> RotationResult:
        """Rotate to a new master key (saved to the key file first), re-wrap every data key
        under it, and with ``retire_old`` destroy the older master keys."""
        from traingate.vault.rotation import rotate_master_key

        if self.key_file is None:
            raise ConfigError("no key file to rotate: open traingate with settings")
        result, ring = rotate_master_key(
            vault=self.vault, key_file=self.key_file, retire_old=retire_old
        )
        self.keys = ring
        self.store.keys = ring
        self.vault = Vault(self.store.db, keys=ring, policy=self.policy)
        return result

    def purge(self, *, as_of: int | None = None) -> PurgeCounts:
        """Delete expired reports and hard-delete data deleted more than 30 days before
        ``as_of`` (default: now, the one place the wall clock decides)."""
        from traingate.retention import purge

        when = now_micros() if as_of is None else as_of
        return purge(db=self.store.db, vault=self.vault, as_of=when)

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
    ) -> BuildResult:
        """Build the dataset of everything ``purpose`` may use as of ``as_of`` (default now)
        into the new directory ``out``: records, signed manifest, lineage. BuildError when
        ``out`` exists."""
        from traingate.build.builder import build_dataset
        from traingate.build.engine import BuildRequest
        from traingate.build.engines import engine_named
        from traingate.build.writer import as_format

        self.policy.require_purpose(purpose)
        request = BuildRequest(
            policy=self.policy, purpose=purpose, as_of=now_micros() if as_of is None else as_of
        )
        return build_dataset(
            store=self.store,
            vault=self.vault,
            keys=self.keys,
            request=request,
            engine=engine_named(engine),
            out=out,
            format=as_format(format),
            progress=progress,
        )

    def verify_dataset(self, *, path: Path) -> Verification:
        """Recompute a dataset's files, counts and signature against its manifest."""
        from traingate.build.verify import verify_dataset

        return verify_dataset(path, signing_key=self.keys.signing_key)

    def lineage(self, *, conversation_id: str | None = None, receipt: str | None = None) -> Lineage:
        """The builds holding data of a conversation, or of the feedback report of a receipt."""
        from traingate.build.lineage import (
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
