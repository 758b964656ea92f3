"""Record ids and lineage keys computed in bulk are the HMACs of ``hmac`` itself."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from traingate.build.records import _mac, _Macs


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=0, max_size=150),
    parts=st.lists(st.text(max_size=40), min_size=1, max_size=4),
)
def test_prepared_hmac_is_hmac(key: bytes, parts: list[str]) -> None:
    assert _Macs(key).hex(*parts) == _mac(key, *parts)
