"""Signing secrets at rest. The dispatcher needs each webhook secret itself to sign (an HMAC), so it
cannot be kept as a hash the way API tokens are; it is sealed instead, with Fernet (AES in CBC mode
and an HMAC-SHA256 over it, from `cryptography`), under keys that live outside the database. A
copy of the database alone does not let anyone sign as gapstream.

Keys come from ``GAPSTREAM_SECRET_KEYS`` (Fernet keys, comma-separated: the first seals, all of them
open). A key is rotated by putting the new one first: the next start seals every secret again
under it, and the old key can then be removed. The embedded default keeps one in ``secret.key``
under the data directory, created on first use and readable by its owner only.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"
_CACHE_LIMIT = 10_000  # opened secrets kept: the dispatcher opens one per delivery


class SealError(RuntimeError):
    """A stored secret cannot be opened with the keys given."""


class Sealer:
    def __init__(self, keys: Sequence[str | bytes]):
        if not keys:
            raise SealError("no key to seal signing secrets with")
        try:
            self._first = Fernet(keys[0])
            self._fernet = MultiFernet([self._first, *(Fernet(k) for k in keys[1:])])
        except ValueError as exc:
            raise SealError("a key in GAPSTREAM_SECRET_KEYS is not a Fernet key (32 url-safe base64 bytes; "
                            "make one with: python -c 'from cryptography.fernet import Fernet; "
                            "print(Fernet.generate_key().decode())')") from exc
        self._opened: dict[str, str] = {}

    @classmethod
    def generate(cls) -> Sealer:
        """A sealer with a new key of its own, for a store that lives as long as one process."""
        return cls([Fernet.generate_key()])

    @classmethod
    def from_key_file(cls, path: Path) -> Sealer:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under a name of its own, readable by its owner only, then linked into
            # place: of two processes starting at once, one key wins and neither reads half a file.
            draft = path.with_name(f"{path.name}.{os.getpid()}")
            with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(Fernet.generate_key())
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return cls([path.read_bytes().strip()])

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def is_sealed(self, stored: str) -> bool:
        return stored.startswith(PREFIX)

    def resealed(self, stored: str) -> str | None:
        """The value sealed under the first key, or None when it already is. Opens it on the way, so
        a value no key opens raises here."""
        if not self.is_sealed(stored):
            return self.seal(stored)
        secret = self.open(stored)
        try:
            self._first.decrypt(stored.removeprefix(PREFIX).encode())
            return None
        except InvalidToken:
            return self.seal(secret)

    def open(self, stored: str) -> str:
        opened = self._opened.get(stored)
        if opened is None:
            if not self.is_sealed(stored):
                raise SealError("a signing secret is stored unsealed")
            try:
                opened = self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
            except InvalidToken as exc:
                raise SealError("the signing secrets in the database were sealed with another key: "
                                "set GAPSTREAM_SECRET_KEYS to include it") from exc
            if len(self._opened) >= _CACHE_LIMIT:
                self._opened.clear()
            self._opened[stored] = opened
        return opened
