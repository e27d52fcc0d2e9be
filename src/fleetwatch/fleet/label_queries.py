"""Labels as a distributed query source: which label queries a host is sent, and how its
answers change membership.

A host answers the dynamic labels of its platform family, then not again for
`label_interval` (with jitter), unless a label query is added or changed meanwhile: every
change bumps a generation, and only answers to the current generation's queries push the
next due time out. On a cluster the node that got a host's answers tells the others
(`DUE_CHANNEL`), so a host is not asked once per node; nodes agree on the queries by their
digest, not a local counter. A failed label query leaves membership as it was (unknown is
not false).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import TYPE_CHECKING

import orjson

from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.label_definitions import Label, platform_family

#: The bus channel on which nodes share when a host's label queries are next due.
DUE_CHANNEL = "label-due"
#: The distributed query name of label N is `fleet_label_query_N` (Fleet's).
PREFIX = "fleet_label_query_"


class LabelQueries:
    """The part of `LabelService` that hands hosts their label queries and reads the
    answers."""

    prefix = PREFIX

    settings: Settings
    hosts: HostService
    _labels: dict[int, Label]
    _members: dict[int, set[int]]
    _due: dict[int, float]
    _generation: int
    _asked: dict[int, int]
    _digest: tuple[int, str]

    if TYPE_CHECKING:

        async def _apply_many(self, changes: list[tuple[int, set[int], set[int]]]) -> None: ...

    def _invalidate(self) -> None:
        """Every host runs the current label queries at its next check-in."""
        self._due.clear()
        self._generation += 1

    def _queries_digest(self) -> str:
        """What every node running the same label queries agrees on (not a local counter)."""
        if self._digest[0] == self._generation:
            return self._digest[1]
        text = "\n".join(
            f"{label.id}:{label.platform}:{label.query}"
            for label in sorted(self._labels.values(), key=lambda lab: lab.id)
            if label.membership_type == "dynamic"
        )
        self._digest = (self._generation, hashlib.sha256(text.encode()).hexdigest()[:16])
        return self._digest[1]

    def _on_due(self, payload: bytes) -> None:
        """Another node got a host's answers to the current label queries: it need not
        answer them again here before they are due (a cluster without stickiness would
        otherwise ask each host once per node)."""
        try:
            host_id, due, digest = orjson.loads(payload)
        except (ValueError, TypeError):
            return
        if digest == self._queries_digest() and due > self._due.get(int(host_id), 0.0):
            self._due[int(host_id)] = float(due)

    def queries_for(self, host: HostState, now: float) -> dict[str, str]:
        """The host's label queries by name, or none while its last answers are current."""
        if now < self._due.get(host.id, 0.0):
            return {}
        family = platform_family(host.platform)
        self._asked[host.id] = self._generation
        return {
            f"{PREFIX}{label.id}": label.query
            for label in self._labels.values()
            if label.membership_type == "dynamic"
            and (not label.platform or label.platform == family)
        }

    async def ingest(self, host: HostState, results: list[DistributedResult]) -> None:
        """Update membership from label query answers; failures leave it unknown."""
        asked = self._asked.get(host.id)  # None: another node handed the queries out
        if asked is None or asked == self._generation:
            jitter = secrets.randbelow(1000) / 10000.0
            due = time.time() + self.settings.label_interval * (1.0 + jitter)
            self._due[host.id] = due
            if self.hosts.bus.clustered:
                self.hosts.bus.publish(
                    DUE_CHANNEL, orjson.dumps([host.id, due, self._queries_digest()])
                )
        changes: list[tuple[int, set[int], set[int]]] = []
        for result in results:
            suffix = result.name[len(PREFIX) :]
            if not suffix.isdigit() or int(suffix) not in self._labels:
                continue
            if result.failed:
                continue  # unknown, not false
            label_id = int(suffix)
            member = host.id in self._members.get(label_id, ())
            if result.rows and not member:
                changes.append((label_id, {host.id}, set()))
            elif not result.rows and member:
                changes.append((label_id, set(), {host.id}))
        # one transaction and one host document update for the whole write
        await self._apply_many(changes)
