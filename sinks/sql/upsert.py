"""Insert-or-update, the way every idempotent SQL sink writes: a replayed message rewrites the same
row, and with ``unless_newer`` an older message never replaces a newer one."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def upsert(insert: Callable, model: Any, rows: list[dict[str, Any]], keys: Sequence[str],
           unless_newer: str | None = None) -> Any:
    """The statement; ``insert`` is the dialect's (SQLite or PostgreSQL), ``unless_newer`` a column
    whose stored value, when greater, keeps the stored row."""
    stmt = insert(model).values(rows)
    changes = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    where = getattr(model, unless_newer) <= stmt.excluded[unless_newer] if unless_newer else None
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=changes, where=where)
