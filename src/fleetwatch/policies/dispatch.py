"""Policies as a distributed query source: which policies a host runs now, and its answers.

A host gets `fleet_policy_query_<id>` on distributed/read when the policy applies to it
(its team, its platform) and it has no answer to the current query or its last answer is
older than the policy's interval. Deciding that is a few dictionary lookups (no I/O on the
check-in path); a host with nothing due is told so by one comparison with its next due time.

Each node keeps when it last took each host's answer; on a cluster it tells the others (bus
channel `policy-answered`, one message per `SHARE_WINDOW` of answers), so a host answering
on one node is not asked again early by another. A node that misses a message (Redis away)
asks that host once more: an extra answer, never a missed one.

An answer becomes the host's `fleet:policy-result` document only when it differs from the
one stored (response, error, hostname or team): a host that keeps passing costs no write.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import orjson

from fleetwatch.bus.bus import Bus
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.host_state import HostState, iso
from fleetwatch.fleet.label_definitions import platform_family
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.policies.model import FAIL, PASS, PREFIX, RESULT_KIND, UNKNOWN, Policy, result_link
from fleetwatch.policies.results import PolicyResults

log = logging.getLogger(__name__)

#: The bus channel of answer times.
CHANNEL = "policy-answered"
#: Seconds a node gathers answer times before telling the others (one message each).
SHARE_WINDOW = 0.2


def applies(policy: Policy, host: HostState) -> bool:
    """Whether the host runs the policy (its team's or a global one, on its platform)."""
    if policy.team_id is not None and policy.team_id != host.team_id:
        return False
    families = policy.families
    return not families or platform_family(host.platform) in families


def result_body(policy_id: int, host: HostState, response: str, error: str) -> dict[str, Any]:
    return {
        "policy_id": policy_id,
        "host_id": host.id,
        "hostname": host.hostname,
        "team_id": host.team_id,
        "response": response,
        "error": error,
        "updated_at": iso(time.time()),
    }


class PolicySource:
    """The distributed query source of policies."""

    prefix = PREFIX

    def __init__(
        self,
        book: dict[int, Policy],
        results: PolicyResults,
        index: DocumentIndex,
        wakeups: HostWakeups,
        bus: Bus | None = None,
    ) -> None:
        self.book = book
        self.results = results
        self.index = index
        self.wakeups = wakeups
        #: policy id -> host id -> when the host's answer was last taken (by any node).
        self._answered: dict[int, dict[int, float]] = {}
        #: Answer times not yet told to the other nodes: (policy id, host id, when).
        self._outbox: list[tuple[int, int, float]] = []
        self._share_handle: asyncio.TimerHandle | None = None
        self.bus = bus if bus is not None and bus.clustered else None
        if self.bus is not None:
            self.bus.subscribe(CHANNEL, self._on_shared)
        #: host id -> when its next policy is due (absent: work it out on the next read).
        self._due: dict[int, float] = {}
        #: (host id, policy id) -> the query text the host was handed (an answer to a query
        #: since changed is not an answer to the current one).
        self._asked: dict[tuple[int, int], str] = {}

    def changed(self, policy_id: int | None = None, *, reset: bool = False) -> None:
        """Policies were added or changed: work out every host's due time again and wake
        the held reads; with `reset`, every host answers `policy_id` anew."""
        if reset and policy_id is not None:
            self._answered.pop(policy_id, None)
        self._due.clear()
        self.wakeups.wake_all()

    def forget(self, policy_id: int) -> None:
        self._answered.pop(policy_id, None)

    def answered_at(self, policy_id: int, host_id: int) -> float | None:
        """When the host's answer to the policy was last taken, as far as this node knows."""
        return self._answered.get(policy_id, {}).get(host_id)

    def stop(self) -> None:
        """Tell the other nodes the answer times still gathered."""
        if self._share_handle is not None:
            self._share_handle.cancel()
        self._share()

    # --- the cluster's answer times ----------------------------------------------------------

    def _note(self, policy_id: int, host_id: int, at: float) -> None:
        self._answered.setdefault(policy_id, {})[host_id] = at
        if self.bus is None:
            return
        self._outbox.append((policy_id, host_id, at))
        if self._share_handle is None:
            self._share_handle = asyncio.get_running_loop().call_later(SHARE_WINDOW, self._share)

    def _share(self) -> None:
        self._share_handle = None
        batch, self._outbox = self._outbox, []
        if batch and self.bus is not None:
            self.bus.publish(CHANNEL, orjson.dumps(batch))

    def _on_shared(self, payload: bytes) -> None:
        """Another node's answer times: a later one than this node knows wins."""
        try:
            batch = orjson.loads(payload)
            items = [(int(p), int(h), float(at)) for p, h, at in batch]
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            log.warning("ignored a malformed %s message: %s", CHANNEL, exc)
            return
        for policy_id, host_id, at in items:
            if policy_id not in self.book:
                continue
            known = self._answered.setdefault(policy_id, {})
            if at > known.get(host_id, 0.0):
                known[host_id] = at

    # --- QuerySource ---------------------------------------------------------------------

    def queries_for(self, host: HostState, now: float) -> dict[str, str]:
        if now < self._due.get(host.id, 0.0):
            return {}
        queries: dict[str, str] = {}
        next_due = math.inf
        for policy in self.book.values():
            if not applies(policy, host):
                continue
            at = self._answered.get(policy.id, {}).get(host.id)
            if at is None or now - at >= policy.interval:
                queries[f"{PREFIX}{policy.id}"] = policy.query
                self._asked[(host.id, policy.id)] = policy.query
            else:
                next_due = min(next_due, at + policy.interval)
        if not queries:
            self._due[host.id] = next_due
        return queries

    async def ingest(self, host: HostState, results: list[DistributedResult]) -> None:
        """Take a host's answers: pass with rows, fail without, unknown on an error."""
        now = time.time()
        writes: list[Write] = []
        for result in results:
            suffix = result.name[len(PREFIX) :]
            policy = self.book.get(int(suffix)) if suffix.isdigit() else None
            if policy is None:
                continue
            asked = self._asked.pop((host.id, policy.id), None)
            if asked is not None and asked != policy.query:
                continue  # the answer to a query since changed: ask again
            if result.failed:
                response, error = UNKNOWN, result.message or f"status {result.status}"
            else:
                response, error = (PASS if result.rows else FAIL), ""
            self._note(policy.id, host.id, now)
            known = self.results.answer(policy.id, host.id)
            if (
                known is not None
                and (known.response, known.error) == (response, error)
                and (known.team_id, known.hostname) == (host.team_id, host.hostname)
            ):
                continue
            writes.append(
                Write(
                    Action.PUT,
                    result_link(policy.id, host.id),
                    RESULT_KIND,
                    result_body(policy.id, host, response, error),
                )
            )
        self._due.pop(host.id, None)
        if writes:
            for outcome in await self.index.apply(writes):
                if isinstance(outcome, Exception):
                    raise outcome

    # --- resets ----------------------------------------------------------------------------

    def reset_writes(self, policy_id: int, hosts: Iterable[HostState]) -> list[Write]:
        """Every answered host back to unknown (the policy's query changed)."""
        answered = self.results.answers(policy_id)
        return [
            Write(
                Action.PUT,
                result_link(policy_id, host.id),
                RESULT_KIND,
                result_body(policy_id, host, UNKNOWN, ""),
            )
            for host in hosts
            if host.id in answered
            and (answered[host.id].response, answered[host.id].error) != (UNKNOWN, "")
        ]
