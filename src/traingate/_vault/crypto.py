"""Envelope encryption of one report, and receipt secrets. Pure functions over bytes.

Each report is sealed with its own random 256-bit data key (AES-256-GCM, random 96-bit nonce).
The data key is stored only wrapped, together with the report's exact submission and expiry
instants: the *key blob* (data key || submitted_at || expires_at) is AES-256-GCM-encrypted
under a master key of the key file, with a random nonce of its own prefixed to it. So the
exact instants, which could be matched against message times in the main database, are as
secret as the data key; the vault's columns carry only their UTC days. Associated data binds
the payload to its report id and exact instants, and the key blob to its report id and master
key id, so a row whose columns were swapped or edited fails to open instead of opening as
something else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from traingate._errors import StoreError
from traingate._keys import MasterKey

__all__ = [
    "SCHEME",
    "KeyBlob",
    "Sealed",
    "b64",
    "new_receipt_secret",
    "new_report_id",
    "open_sealed",
    "rewrap",
    "seal",
    "secret_hash",
    "secrets_match",
    "unb64",
    "unwrap_blob",
]

SCHEME = "aes256gcm+gcmwrap/v2"  # what a row's scheme column says; the same for every row
KEY_BYTES = 32
NONCE_BYTES = 12
_PAYLOAD_AD = b"traingate/_vault/payload/v1"
_WRAP_AD = b"traingate/_vault/data-key/v1"
_RECEIPT_AD = b"traingate/_vault/receipt/v1"
_TIMES = struct.Struct(">qq")  # submitted_at, expires_at: signed 64-bit microseconds


@dataclass(frozen=True, slots=True)
class Sealed:
    """What is stored of one encrypted payload."""

    master_key_id: str
    wrapped_key: bytes  # wrap nonce (12 bytes) || AES-GCM(master, key blob) with tag
    nonce: bytes
    ciphertext: bytes  # AES-GCM(data key, payload) with tag


@dataclass(frozen=True, slots=True)
class KeyBlob:
    """What a wrapped key holds: the data key and the report's exact instants."""

    data_key: bytes = field(repr=False)
    submitted_at: int
    expires_at: int

    def to_bytes(self) -> bytes:
        return self.data_key + _TIMES.pack(self.submitted_at, self.expires_at)

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyBlob:
        if len(raw) != KEY_BYTES + _TIMES.size:
            raise StoreError("a vault key blob has the wrong length")
        submitted_at, expires_at = _TIMES.unpack(raw[KEY_BYTES:])
        return cls(data_key=raw[:KEY_BYTES], submitted_at=submitted_at, expires_at=expires_at)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def new_report_id() -> str:
    """A random report id (128 bits, URL-safe, never contains ``.``)."""
    return secrets.token_urlsafe(16)


def new_receipt_secret() -> str:
    """A random receipt secret (256 bits, URL-safe, never contains ``.``)."""
    return secrets.token_urlsafe(32)


def secret_hash(report_id: str, secret: str) -> str:
    """What the vault keeps of a receipt secret. The secret has 256 bits of entropy, so one
    SHA-256 (domain-separated, bound to the report id) is enough: nothing to brute-force."""
    digest = hashlib.sha256(b"\x00".join((_RECEIPT_AD, report_id.encode(), secret.encode())))
    return digest.hexdigest()


def secrets_match(stored_hash: str, report_id: str, secret: str) -> bool:
    """Constant-time check of a receipt secret against the stored hash."""
    return hmac.compare_digest(stored_hash.encode(), secret_hash(report_id, secret).encode())


def _wrap_ad(report_id: str, master_key_id: str) -> bytes:
    return b"\x00".join((_WRAP_AD, report_id.encode(), master_key_id.encode()))


def _payload_ad(report_id: str, submitted_at: int, expires_at: int) -> bytes:
    return b"\x00".join(
        (_PAYLOAD_AD, report_id.encode(), str(submitted_at).encode(), str(expires_at).encode())
    )


def _wrap(blob: bytes, *, master: MasterKey, report_id: str) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, blob, _wrap_ad(report_id, master.id))


def _unwrap(wrapped: bytes, *, master: MasterKey, report_id: str) -> bytes:
    nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
    try:
        return AESGCM(master.key).decrypt(nonce, body, _wrap_ad(report_id, master.id))
    except InvalidTag:
        raise StoreError(
            f"vault report {report_id}: its data key does not unwrap under master key "
            f"{master.id} (wrong key file, or the row was altered)"
        ) from None


def _check_master(sealed: Sealed, master: MasterKey, report_id: str) -> None:
    if master.id != sealed.master_key_id:
        raise StoreError(
            f"vault report {report_id} is wrapped by {sealed.master_key_id}, not {master.id}"
        )


def seal(
    plaintext: bytes, *, master: MasterKey, report_id: str, submitted_at: int, expires_at: int
) -> Sealed:
    """Encrypt ``plaintext`` under a fresh data key and nonce; wrap the key and the exact
    instants under ``master``."""
    blob = KeyBlob(
        data_key=AESGCM.generate_key(bit_length=KEY_BYTES * 8),
        submitted_at=submitted_at,
        expires_at=expires_at,
    )
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(blob.data_key).encrypt(
        nonce, plaintext, _payload_ad(report_id, submitted_at, expires_at)
    )
    return Sealed(
        master_key_id=master.id,
        wrapped_key=_wrap(blob.to_bytes(), master=master, report_id=report_id),
        nonce=nonce,
        ciphertext=ciphertext,
    )


def unwrap_blob(sealed: Sealed, *, master: MasterKey, report_id: str) -> KeyBlob:
    """The data key and exact instants of a report (no payload decryption: cheap)."""
    _check_master(sealed, master, report_id)
    return KeyBlob.from_bytes(_unwrap(sealed.wrapped_key, master=master, report_id=report_id))


def open_sealed(sealed: Sealed, *, master: MasterKey, report_id: str) -> tuple[KeyBlob, bytes]:
    """Unwrap with ``master`` (the key named by ``sealed.master_key_id``) and decrypt.
    Returns the key blob (exact instants) and the plaintext. Raises StoreError when the key
    or the row does not authenticate."""
    blob = unwrap_blob(sealed, master=master, report_id=report_id)
    try:
        plaintext = AESGCM(blob.data_key).decrypt(
            sealed.nonce,
            sealed.ciphertext,
            _payload_ad(report_id, blob.submitted_at, blob.expires_at),
        )
    except InvalidTag:
        raise StoreError(
            f"vault report {report_id}: the payload does not authenticate (the row was altered)"
        ) from None
    return blob, plaintext


def rewrap(wrapped: bytes, *, old: MasterKey, new: MasterKey, report_id: str) -> bytes:
    """The same key blob, unwrapped with ``old`` and wrapped again under ``new``."""
    return _wrap(_unwrap(wrapped, master=old, report_id=report_id), master=new, report_id=report_id)
