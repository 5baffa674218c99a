"""Secrets at rest: AES-256-GCM with a key from `REPLICAS_SECRET_KEY` or a generated key file (0600).

Stored form: ``v1:<base64(nonce || ciphertext+tag)>``. API keys are never encrypted, only hashed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1:"
KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts and decrypts short secrets (variable values, credentials, file contents)."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("SecretBox needs a 32-byte key")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, secret_key: str | None, data_dir: Path) -> SecretBox:
        """Derive the key from a configured passphrase, or load (creating once) the data dir's key file."""
        if secret_key:
            return cls(hashlib.sha256(secret_key.encode()).digest())
        path = data_dir / KEY_FILE_NAME
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(32)))
        return cls(base64.b64decode(path.read_bytes().strip()))

    def encrypt(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        if not token.startswith(_PREFIX):
            raise ValueError("not an encrypted value")
        raw = base64.b64decode(token[len(_PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()


def hash_api_key(key: str) -> str:
    """API keys are stored as SHA-256 hex digests: they are high-entropy, so no slow hash is needed."""
    return hashlib.sha256(key.encode()).hexdigest()


API_KEY_PREFIX = "sk_replicas_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)
