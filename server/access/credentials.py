"""Secrets Foyer must keep to act for a host later (a CalDAV app password),
encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256, from the well-kept
``cryptography`` library).

The key comes from ``FOYER_CALENDAR_KEY`` (Fernet keys, comma-separated: the
first encrypts, every one decrypts, so keys can be rotated), or, unset, is
derived from ``FOYER_SECRET`` with HKDF, so a deployment works out of the box.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class UnreadableSecret(Exception):
    """A stored secret this key cannot decrypt (the key changed)."""


def derived_key(secret: str) -> bytes:
    """A Fernet key from the server's secret (HKDF-SHA256, its own label)."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"foyer calendar credentials"
    ).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


class CredentialBox:
    def __init__(self, keys: str | None, secret: str) -> None:
        listed = [k.strip() for k in (keys or "").split(",") if k.strip()]
        try:
            fernets = [Fernet(k) for k in listed] or [Fernet(derived_key(secret))]
        except ValueError as exc:
            raise ValueError(
                "FOYER_CALENDAR_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated"
            ) from exc
        self._box = MultiFernet(fernets)

    def seal(self, plain: str) -> str:
        return self._box.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._box.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(
                "a stored secret does not decrypt with FOYER_CALENDAR_KEY"
            ) from None
