"""A least-recently-used cache bounded by the bytes of what it holds, safe to share between threads.

The app keeps one per process (app.results) for all sessions; what it evicts is recomputed.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


def size_of(value: Any) -> int:
    """Approximate bytes held by a value: arrays, bytes and strings, inside dicts, lists, tuples."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(v) for v in value)
    return 8


def _freeze(value: Any) -> None:
    """Make the arrays of a cached value read-only: every session gets the same objects."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for item in value.values():
            _freeze(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _freeze(item)


class ByteLRU:
    """Keeps values while their total size stays within ``budget`` bytes, dropping the least
    recently used first; a value larger than the whole budget is returned but not kept."""

    def __init__(self, budget: int):
        self.budget = budget
        self.nbytes = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any) -> Any:
        _freeze(value)
        size = size_of(value)
        with self._lock:
            if key in self._items:
                self.nbytes -= self._items.pop(key)[1]
            if size <= self.budget:
                self._items[key] = (value, size)
                self.nbytes += size
            while self.nbytes > self.budget:
                self.nbytes -= self._items.popitem(last=False)[1][1]
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, else ``compute()`` (outside the lock), cached."""
        value = self.get(key)
        return value if value is not None else self.put(key, compute())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0
