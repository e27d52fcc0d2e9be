"""A predicate index over many standing queries: which of them does a document match?

Each query's DNF conjunctions are indexed under ONE positive TERM equality ("access term"):
a conjunction can only match a document whose value at the term's path has the term's key,
so the lookup finds every conjunction that could match and verifying those is exact.

- A conjunction with an equality on `documentKind` and another equality is indexed under
  the pair (kind value, other property = value): many tasks on one kind do not collide.
- Otherwise it is indexed under its equality whose bucket is currently the smallest (the
  most selective-looking one).
- A conjunction with no positive TERM equality (only negations, ranges, prefixes, wildcards,
  phrases) goes to the always-check list.

Collection-item paths (`tags.item`) are indexed like any path: each element is looked up.
Per document, the cost is one lookup per indexed property path plus the verification of the
candidate conjunctions and of the always-check list; it grows with the tasks that could
match, not with all tasks (Xenon evaluates every task's filter for every write).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fleetwatch.query.matcher import (
    CompiledConjunction,
    CompiledQuery,
    IndexKey,
    TermMatcher,
    match_value_keys,
    value_key,
    values_at,
)
from fleetwatch.query.spec_enums import MatchType

K = TypeVar("K", bound=Hashable)

_KIND_PATH = ("documentKind",)
Path = tuple[str, ...]
Buckets = dict[IndexKey, set[tuple[Any, int]]]


@dataclass
class _Registration(Generic[K]):
    """Where one query's conjunctions were put, so that `remove` undoes exactly that."""

    compiled: CompiledQuery
    by_prop: list[tuple[Path, IndexKey, int]] = field(default_factory=list)
    by_kind: list[tuple[IndexKey, Path, IndexKey, int]] = field(default_factory=list)
    always: list[int] = field(default_factory=list)


def _eligible(term: TermMatcher) -> bool:
    """A positive equality term: the only kind an equality index can answer exactly."""
    t = term.term
    return not term.negate and t.range is None and t.match_type is MatchType.TERM


class PredicateIndex(Generic[K]):
    """Standing queries keyed by K; `match(doc)` returns the keys of those it satisfies."""

    def __init__(self) -> None:
        self._tasks: dict[K, _Registration[K]] = {}
        self._by_prop: dict[Path, Buckets] = {}
        self._by_kind: dict[IndexKey, dict[Path, Buckets]] = {}
        self._always: set[tuple[K, int]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __iter__(self) -> Iterator[K]:
        return iter(self._tasks)

    @property
    def always_check_count(self) -> int:
        """Conjunctions verified for every document (no equality term to index them by)."""
        return len(self._always)

    @property
    def entry_count(self) -> int:
        """Index entries held (a conjunction may sit under two keys, e.g. "7" and 7.0)."""
        by_prop = sum(len(b) for buckets in self._by_prop.values() for b in buckets.values())
        by_kind = sum(
            len(b)
            for per_path in self._by_kind.values()
            for buckets in per_path.values()
            for b in buckets.values()
        )
        return by_prop + by_kind + len(self._always)

    def get(self, key: K) -> CompiledQuery | None:
        """The compiled query registered under `key`."""
        registration = self._tasks.get(key)
        return None if registration is None else registration.compiled

    def add(self, key: K, compiled: CompiledQuery) -> None:
        """Register (or replace) the query under `key`."""
        if key in self._tasks:
            self.remove(key)
        reg: _Registration[K] = _Registration(compiled)
        for i, conjunction in enumerate(compiled.conjunctions):
            self._place(key, i, conjunction, reg)
        self._tasks[key] = reg

    def _place(
        self, key: K, i: int, conjunction: CompiledConjunction, reg: _Registration[K]
    ) -> None:
        entry = (key, i)
        eligible = [t for t in conjunction.terms if _eligible(t)]
        kinds = [t for t in eligible if t.path == _KIND_PATH]
        others = [t for t in eligible if t.path != _KIND_PATH]
        if kinds and others:
            kind_keys = match_value_keys(kinds[0].term.match_value or "")
            best = min(others, key=lambda t: self._kind_bucket_size(kind_keys, t))
            for kind_key in kind_keys:
                per_path = self._by_kind.setdefault(kind_key, {})
                buckets = per_path.setdefault(best.path, {})
                for value in match_value_keys(best.term.match_value or ""):
                    buckets.setdefault(value, set()).add(entry)
                    reg.by_kind.append((kind_key, best.path, value, i))
        elif eligible:
            best = min(eligible, key=self._prop_bucket_size)
            buckets = self._by_prop.setdefault(best.path, {})
            for value in match_value_keys(best.term.match_value or ""):
                buckets.setdefault(value, set()).add(entry)
                reg.by_prop.append((best.path, value, i))
        else:
            self._always.add(entry)
            reg.always.append(i)

    def _prop_bucket_size(self, term: TermMatcher) -> int:
        buckets = self._by_prop.get(term.path, {})
        return sum(len(buckets.get(k, ())) for k in match_value_keys(term.term.match_value or ""))

    def _kind_bucket_size(self, kind_keys: tuple[IndexKey, ...], term: TermMatcher) -> int:
        values = match_value_keys(term.term.match_value or "")
        total = 0
        for kind_key in kind_keys:
            buckets = self._by_kind.get(kind_key, {}).get(term.path, {})
            total += sum(len(buckets.get(v, ())) for v in values)
        return total

    def remove(self, key: K) -> bool:
        """Unregister the query under `key`; False if there was none."""
        reg = self._tasks.pop(key, None)
        if reg is None:
            return False
        for path, value, i in reg.by_prop:
            buckets = self._by_prop[path]
            _discard(buckets, value, (key, i))
            if not buckets:
                del self._by_prop[path]
        for kind_key, path, value, i in reg.by_kind:
            per_path = self._by_kind[kind_key]
            buckets = per_path[path]
            _discard(buckets, value, (key, i))
            if not buckets:
                del per_path[path]
            if not per_path:
                del self._by_kind[kind_key]
        for i in reg.always:
            self._always.discard((key, i))
        return True

    def _candidate_entries(self, doc: Mapping[str, Any]) -> set[tuple[K, int]]:
        entries: set[tuple[K, int]] = set(self._always)
        for path, buckets in self._by_prop.items():
            _collect(doc, path, buckets, entries)
        if self._by_kind:
            for kind in values_at(doc, _KIND_PATH):
                kind_key = value_key(kind)
                per_path = self._by_kind.get(kind_key) if kind_key is not None else None
                if per_path:
                    for path, buckets in per_path.items():
                        _collect(doc, path, buckets, entries)
        return entries

    def candidates(self, doc: Mapping[str, Any]) -> set[K]:
        """Keys of the queries that could match `doc` (a superset of `match(doc)`)."""
        return {key for key, _ in self._candidate_entries(doc)}

    def match(self, doc: Mapping[str, Any]) -> set[K]:
        """Keys of the queries `doc` satisfies (candidates, then verified)."""
        matched: set[K] = set()
        for key, i in self._candidate_entries(doc):
            if key in matched:
                continue
            if self._tasks[key].compiled.conjunctions[i].matches(doc):
                matched.add(key)
        return matched


def _collect(doc: Mapping[str, Any], path: Path, buckets: Buckets, out: set[Any]) -> None:
    if len(path) == 1:  # the common case: a top-level field
        if path[0] not in doc:
            return
        found: Any = (doc[path[0]],)
    else:
        found = values_at(doc, path)
    for value in found:
        key = value_key(value)
        if key is not None:
            bucket = buckets.get(key)
            if bucket:
                out |= bucket


def _discard(buckets: Buckets, value: IndexKey, entry: tuple[Any, int]) -> None:
    bucket = buckets.get(value)
    if bucket is not None:
        bucket.discard(entry)
        if not bucket:
            del buckets[value]


__all__ = ["PredicateIndex"]
