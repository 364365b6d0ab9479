"""Erasure: one person's data removed from every store, with an audit record.

``microtune forget --user ID`` or ``--session ID``
(:func:`stores.erasers.forget`). Every store holding session or user data
registers here (:func:`store`) with the folders it keeps under the home and
the function that erases a subject from it; :mod:`stores.erasers` holds the
registrations and ``forget``, the one place that knows every store. A store
added later registers the same way; ``tests/test_erasure.py`` scans a served
home for session ids and fails when one lies in a file no registered store
covers.

What a subject is: a user's pseudonym (``--user`` takes the id the shop
knows, or its pseudonym) and every session of that user found in any store,
or one session. What each store does:

* Parquet (raw events, offline tables): the files holding the subject are
  rewritten without its rows (atomically: a new file, then the old one gone);
* JSON Lines (quarantine, inbox, decision log): rewritten in place under an
  exclusive ``flock`` that the scorer's writers also take, so a line a running
  scorer appends meanwhile is never lost;
* SQLite (online store, label queue): rows deleted with ``secure_delete`` on,
  so the freed pages are overwritten with zeros, and the write-ahead log
  checkpointed and truncated, so no copy of the old pages stays in it;
* Redis (the production online store): the entity keys deleted.

Models cannot unlearn one person: what a model learnt from a session stays in
its weights until it is retrained without it (docs/operations.md, "Erasure").

Examples
--------
>>> Subject.of(sessions=["s1"], users=["p_" + "0" * 32]).matches("s1", None)
True
>>> Subject.of(sessions=["s1"]).matches("s2", "p_" + "0" * 32)
False
>>> Subject.of(sessions=["s1"]).matches(["s1"], None)
False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import Settings


@dataclass(frozen=True)
class Subject:
    """Whose data goes: these sessions, and every row of these user pseudonyms."""

    sessions: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sessions: Iterable[str] = (), users: Iterable[str] = ()) -> Subject:
        return cls(frozenset(sessions), frozenset(users))

    def matches(self, session_id: Any, user_id: Any) -> bool:
        """Whether a row with this session and user belongs to the subject (ids are text;
        a quarantined row may hold anything in their place)."""
        return (isinstance(session_id, str) and session_id in self.sessions) or (
            isinstance(user_id, str) and user_id in self.users
        )

    def __bool__(self) -> bool:
        return bool(self.sessions or self.users)


@dataclass(frozen=True)
class Store:
    """A registered store: its name, what it keeps under the home, how it forgets."""

    name: str
    #: The files and folders under the home it keeps (the coverage test reads them).
    roots: Callable[[Settings], list[Path]]
    #: Removes the subject's rows; returns how many.
    erase: Callable[[Settings, Subject], int]
    #: Sessions of these users it knows of (None: it keeps no user ids).
    sessions_of: Callable[[Settings, frozenset[str]], set[str]] | None = None


STORES: dict[str, Store] = {}


def store(
    name: str,
    roots: Callable[[Settings], list[Path]],
    sessions_of: Callable[[Settings, frozenset[str]], set[str]] | None = None,
) -> Callable[[Callable[[Settings, Subject], int]], Callable[[Settings, Subject], int]]:
    """Register the decorated ``erase(settings, subject) -> rows removed`` as store ``name``."""

    def register(erase: Callable[[Settings, Subject], int]) -> Callable[[Settings, Subject], int]:
        STORES[name] = Store(name, roots, erase, sessions_of)
        return erase

    return register


@dataclass
class ErasureReport:
    """What one ``forget`` removed, store by store."""

    kind: str
    subject: str  # the audit hash of the id, never the id
    sessions: int
    removed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "sessions": self.sessions,
            "removed": self.removed,
            "total": self.total,
            "seconds": round(self.seconds, 3),
        }


def audit_log(settings: Settings) -> Path:
    """The erasure audit: one JSON line per ``forget``, ids only as audit hashes."""
    return settings.home / "audit" / "erasures.jsonl"
