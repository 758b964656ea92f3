"""Record ids, lineage keys and short keyed hashes computed from prepared HMAC states are the
HMACs of ``hmac`` itself."""

from __future__ import annotations

import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from traingate._datasets.records import _mac, _Macs
from traingate._keys import SHORT_HASH, KeyRing, PreparedHmac


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=0, max_size=150), message=st.binary(max_size=300))
def test_prepared_hmac_is_hmac(key: bytes, message: bytes) -> None:
    assert PreparedHmac(key).digest(message) == hmac.digest(key, message, "sha256")


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=0, max_size=150),
    parts=st.lists(st.text(max_size=40), min_size=1, max_size=4),
)
def test_record_ids_in_bulk_are_record_ids(key: bytes, parts: list[str]) -> None:
    assert _Macs(key).hex(*parts) == _mac(key, *parts)


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), kind=st.text(max_size=10), value=st.text())
def test_a_short_hash_is_the_start_of_the_id_hash(key: bytes, kind: str, value: str) -> None:
    """Schema migration 7 turns stored id hashes into short hashes by cutting them."""
    ring = KeyRing(master_keys=(), signing_key=b"s" * 32, id_key=key)
    short = ring.short_hash(kind, value)
    assert len(short) == SHORT_HASH
    assert short == bytes.fromhex(ring.id_hash(kind, value))[:SHORT_HASH]
