"""Pseudonymous user ids: a keyed hash replaces the raw id at every edge.

User ids are replaced where they enter microtune (batch ingest, ``POST
/v1/events``, ``POST /v1/score``) by ``p_`` and 32 hex digits of
HMAC-SHA256 under the home's pseudonym key, so no store keeps the raw id. The
same id under the same key is always the same pseudonym, so a user's history
still joins across sessions. A value that already is a pseudonym is kept as
it is (the scorer's inbox is ingested again by the batch build).

The key is ``MICROTUNE_PRIVACY__PSEUDONYM_KEY`` (hex), or, when it is unset,
a key made on first use and kept in ``HOME/secrets/pseudonym.key`` (mode
0600). Every process that writes user ids for one home (the scorers, the
flows) must use the same key: in production, set the variable for all of
them. Rotating the key is in ``docs/operations.md``.

>>> p = Pseudonymizer(bytes(32))
>>> a = p("user-42")
>>> a.startswith("p_") and len(a) == 34 and p(a) == a and p("user-42") == a
True
>>> p(None), p("user-43") == a
(None, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from core.errors import InputError
from core.settings import Settings

PREFIX = "p_"
_PSEUDONYM = re.compile(r"^p_[0-9a-f]{32}$")


def is_pseudonym(value: str) -> bool:
    return bool(_PSEUDONYM.match(value))


class Pseudonymizer:
    """Raw id -> pseudonym under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise InputError("the pseudonym key must be at least 16 bytes (32 hex digits)")
        self._key = key

    def __call__(self, value: str | None) -> str | None:
        if value is None or is_pseudonym(value):
            return value
        return PREFIX + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]


def key_file(settings: Settings, name: str = "pseudonym") -> Path:
    return settings.home / "secrets" / f"{name}.key"


def _key(settings: Settings, name: str, given: str | None) -> bytes:
    """The setting ``given`` (hex), else ``HOME/secrets/<name>.key`` (made on first use)."""
    if given:
        try:
            return bytes.fromhex(given)
        except ValueError as exc:
            raise InputError(
                f"MICROTUNE_PRIVACY__{name.upper()}_KEY must be hex (for example the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`)"
            ) from exc
    path = key_file(settings, name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex())
    return bytes.fromhex(path.read_text().strip())


def pseudonym_key(settings: Settings) -> bytes:
    """The home's key: the setting, else the key file (made on first use)."""
    return _key(settings, "pseudonym", settings.privacy.pseudonym_key)


def audit_hash(settings: Settings, value: str) -> str:
    """What the erasure audit keeps of an id: ``a_`` and 32 hex digits of HMAC-SHA256
    under the audit key, which is not the pseudonym key, so the audit cannot be joined
    to the data (and holds nothing once the data is gone)."""
    key = _key(settings, "audit", settings.privacy.audit_key)
    return "a_" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymizer(settings: Settings) -> Pseudonymizer:
    return Pseudonymizer(pseudonym_key(settings))
