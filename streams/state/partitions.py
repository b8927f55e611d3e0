"""The state of one input partition: values by key, and the keys changed since the last checkpoint."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PartitionState:
    number: int
    values: dict[str, Any] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)

    def get(self, key: str) -> Any | None:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def take_dirty(self) -> dict[str, Any]:
        changed = {key: self.values[key] for key in self.dirty}
        self.dirty = set()
        return changed
