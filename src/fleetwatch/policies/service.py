"""Policy CRUD, the cache the dispatch reads, counts, and what a host's detail shows.

Definitions live in the `policies` table and, for other nodes and continuous queries, in
`fleet:policy` documents; on a cluster each node follows those documents as labels do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fleetwatch.bus.bus import Bus
from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.fleet.hosts import HostService
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.index.errors import DocumentNotFound
from fleetwatch.policies.dispatch import PolicySource, applies, result_body
from fleetwatch.policies.host_tally import HostTally
from fleetwatch.policies.model import (
    POLICY_KIND,
    RESULT_KIND,
    UNKNOWN,
    Policy,
    check_interval,
    check_name,
    check_platform,
    check_text,
    policy_link,
    result_link,
)
from fleetwatch.policies.results import PolicyResults
from fleetwatch.policies.store import PolicyStore
from fleetwatch.sql_check import check_live_sql_off_loop

log = logging.getLogger(__name__)

#: Fields a body may set.
FIELDS = ("name", "query", "description", "resolution", "platform", "interval")


class PolicyService:
    """Policies: definitions, their dispatch source and their results."""

    def __init__(
        self,
        store: PolicyStore,
        index: DocumentIndex,
        hosts: HostService,
        results: PolicyResults,
        source: PolicySource,
        bus: Bus,
    ) -> None:
        self.store = store
        self.index = index
        self.hosts = hosts
        self.results = results
        self.source = source
        self.bus = bus
        self.tally = HostTally(index)
        #: The policies by id: the dispatch source reads this very dict.
        self.book: dict[int, Policy] = source.book
        #: Awaited with a policy id after it was created, changed or deleted (automations).
        self.on_change: Callable[[int], Awaitable[None]] | None = None
        self._follow_tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        self.book.clear()
        for policy in await self.store.all():
            self.book[policy.id] = policy
        await self.results.load()
        self.tally.load(self.hosts.all())
        if self.bus.clustered:
            self.index.add_listener(self._on_changes)
        await self._purge_orphans()

    def stop(self) -> None:
        self.source.stop()
        self.results.stop()
        self.tally.stop()

    # --- reads -------------------------------------------------------------------------

    def get(self, policy_id: int, team_id: int | None = None) -> Policy:
        """The policy; NotFound unless it exists and belongs to `team_id` (None: global)."""
        policy = self.book.get(policy_id)
        if policy is None or policy.team_id != team_id:
            where = "global policy" if team_id is None else f"policy of team {team_id}"
            raise NotFound(f"no {where} with id {policy_id}")
        return policy

    def find(self, policy_id: int) -> Policy:
        policy = self.book.get(policy_id)
        if policy is None:
            raise NotFound(f"no policy with id {policy_id}")
        return policy

    def listed(self, team_id: int | None) -> list[Policy]:
        return sorted((p for p in self.book.values() if p.team_id == team_id), key=lambda p: p.id)

    def counts(self, policy: Policy, teams: set[int] | None = None) -> tuple[int, int, int]:
        """(passing, failing, unknown) over the hosts that run it (of `teams`, when given:
        the teams whose hosts the user sees). No walk over hosts: the answers are counted
        per team as they arrive, the hosts per team and platform as they change."""
        passing, failing = self.results.counts(policy.id, teams)
        targeted = self.tally.targeted(policy.team_id, policy.families, teams)
        return passing, failing, max(0, targeted - passing - failing)

    def to_json(self, policy: Policy, teams: set[int] | None = None) -> dict[str, Any]:
        passing, failing, unknown = self.counts(policy, teams)
        return {
            **policy.to_json(),
            "passing_host_count": passing,
            "failing_host_count": failing,
            "unknown_host_count": unknown,
        }

    def host_ids(self, policy: Policy, response: str | None) -> set[int]:
        """Hosts that run the policy, with this response when given ("" is unknown)."""
        answers = self.results.answers(policy.id)
        found = set()
        for host in self.hosts.all():
            if not applies(policy, host):
                continue
            answer = answers.get(host.id)
            given = answer.response if answer is not None else UNKNOWN
            if response is None or given == response:
                found.add(host.id)
        return found

    def for_host(self, host_id: int) -> list[dict[str, Any]]:
        """The policies a host runs, each with its response (a host's detail)."""
        host = self.hosts.by_id(host_id)
        if host is None:
            return []
        out = []
        for policy in sorted(self.book.values(), key=lambda p: p.id):
            if applies(policy, host):
                answer = self.results.answer(policy.id, host_id)
                out.append(
                    {
                        "id": policy.id,
                        "name": policy.name,
                        "team_id": policy.team_id,
                        "response": answer.response if answer is not None else UNKNOWN,
                    }
                )
        return out

    # --- writes ------------------------------------------------------------------------

    async def _validated(self, fields: dict[str, Any], current: Policy | None) -> dict[str, Any]:
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise Invalid(f"unknown field {unknown[0]!r}: a policy takes {', '.join(FIELDS)}")
        merged = (
            {}
            if current is None
            else {
                "name": current.name,
                "query": current.query,
                "description": current.description,
                "resolution": current.resolution,
                "platform": current.platform,
                "interval": current.interval,
            }
        )
        merged.update(fields)
        values = {
            "name": check_name(merged.get("name")),
            "description": check_text("description", merged.get("description")),
            "resolution": check_text("resolution", merged.get("resolution")),
            "platform": check_platform(merged.get("platform")),
            "interval": check_interval(merged.get("interval")),
        }
        if "query" not in merged or merged["query"] is None:
            raise Invalid('query is required: the SQL whose rows mean "pass", e.g. SELECT 1')
        if current is None or fields.get("query") is not None:
            values["query"] = await check_live_sql_off_loop(merged["query"])
        else:
            values["query"] = current.query
        return values

    def _check_unique(self, name: str, team_id: int | None, own: int | None) -> None:
        for p in self.book.values():
            if p.name == name and p.team_id == team_id and p.id != own:
                raise Conflict(f"a policy named {name!r} already exists here; choose another name")

    async def create(self, fields: dict[str, Any], team_id: int | None) -> Policy:
        """Validate and store a policy; hosts are woken to run it. InvalidSql for bad SQL."""
        values = await self._validated(fields, None)
        self._check_unique(values["name"], team_id, None)
        policy = await self.store.insert({**values, "team_id": team_id})
        self.book[policy.id] = policy
        await self.index.write(
            Write(Action.PUT, policy_link(policy.id), POLICY_KIND, policy.to_json())
        )
        self.source.changed(policy.id)
        await self._changed(policy.id)
        return policy

    async def update(self, policy: Policy, fields: dict[str, Any]) -> Policy:
        """Change a policy; a changed query sets every host back to unknown and asks again."""
        values = await self._validated(fields, policy)
        self._check_unique(values["name"], policy.team_id, policy.id)
        new_query = values["query"] != policy.query
        values["updated_at"] = dt.datetime.now(dt.UTC).timestamp()
        await self.store.update(policy.id, values)
        for key, value in values.items():
            setattr(policy, key, value)
        writes = [Write(Action.PUT, policy_link(policy.id), POLICY_KIND, policy.to_json())]
        if new_query:
            running = [h for h in self.hosts.all() if applies(policy, h)]
            writes += self.source.reset_writes(policy.id, running)
        # hosts the policy no longer runs on (its platform changed) no longer answer it
        writes += [
            Write(Action.DELETE, result_link(policy.id, host_id))
            for host_id in self.results.answers(policy.id)
            if (host := self.hosts.by_id(host_id)) is not None and not applies(policy, host)
        ]
        await self._apply(writes)
        self.source.changed(policy.id, reset=new_query)
        await self._changed(policy.id)
        return policy

    async def delete(self, policy: Policy) -> None:
        """Delete a policy, its results and its webhooks."""
        await self.store.delete(policy.id)
        self.book.pop(policy.id, None)
        self.source.forget(policy.id)
        writes = [Write(Action.DELETE, policy_link(policy.id))]
        writes += [
            Write(Action.DELETE, result_link(policy.id, host_id))
            for host_id in self.results.answers(policy.id)
        ]
        await self._apply(writes)
        self.results.forget_policy(policy.id)
        await self._changed(policy.id)

    # --- the fleet changed ----------------------------------------------------------------

    async def host_deleted(self, host_id: int) -> None:
        """A deleted host's answers go (documents and counts)."""
        await self._apply(
            [
                Write(Action.DELETE, result_link(policy_id, host_id))
                for policy_id in self.book
                if self.results.answer(policy_id, host_id) is not None
            ]
        )

    async def hosts_moved(self, host_ids: Sequence[int]) -> None:
        """Hosts changed team: answers to policies no longer theirs go, and the others
        carry the new team (what team users' scopes and the team counts go by)."""
        writes: list[Write] = []
        for host_id in host_ids:
            host = self.hosts.by_id(host_id)
            for policy in self.book.values():
                answer = self.results.answer(policy.id, host_id)
                if answer is None:
                    continue
                link = result_link(policy.id, host_id)
                if host is None or not applies(policy, host):
                    writes.append(Write(Action.DELETE, link))
                elif answer.team_id != host.team_id:
                    body = result_body(policy.id, host, answer.response, answer.error)
                    writes.append(Write(Action.PUT, link, RESULT_KIND, body))
        await self._apply(writes)

    async def _purge_orphans(self) -> None:
        """Answers of hosts or policies deleted while their answers could not be (a crash
        between the two) go at start."""
        await self._apply(
            [
                Write(Action.DELETE, result_link(policy_id, host_id))
                for policy_id, host_id in self.results.pairs()
                if policy_id not in self.book or self.hosts.by_id(host_id) is None
            ]
        )

    async def team_deleted(self, team_id: int) -> None:
        """A deleted team's policies go with it (their rows went by cascade)."""
        for policy in [p for p in self.book.values() if p.team_id == team_id]:
            await self.delete(policy)

    async def _apply(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        for outcome in await self.index.apply(writes):
            # another node deleted it first: what was asked for holds
            if isinstance(outcome, Exception) and not isinstance(outcome, DocumentNotFound):
                log.warning("policy document not written: %s", outcome)

    async def _changed(self, policy_id: int) -> None:
        if self.on_change is not None:
            await self.on_change(policy_id)

    def _follow(self, policy_id: int) -> None:
        """`on_change` for another node's change (the listener must not wait)."""
        task = asyncio.create_task(self._changed(policy_id))
        self._follow_tasks.add(task)
        task.add_done_callback(self._follow_tasks.discard)

    # --- cluster -----------------------------------------------------------------------

    def _on_changes(self, batch: Sequence[Change]) -> None:
        """Other nodes' policy definitions (a cluster only)."""
        for change in batch:
            if change.kind != POLICY_KIND:
                continue
            suffix = change.self_link.rsplit("/", 1)[-1]
            if not suffix.isdigit():
                continue
            policy_id = int(suffix)
            if change.action is Action.DELETE:
                if self.book.pop(policy_id, None) is not None:
                    self.source.forget(policy_id)
                    self._follow(policy_id)
                continue
            try:
                policy = _from_body(policy_id, change.body)
            except (KeyError, TypeError, ValueError):
                log.warning("ignored a malformed policy document %s", change.self_link)
                continue
            before = self.book.get(policy_id)
            if before is not None and before.to_json() == policy.to_json():
                continue  # this node's own write
            self.book[policy_id] = policy
            self.source.changed(
                policy_id, reset=before is not None and before.query != policy.query
            )
            self._follow(policy_id)


def _epoch(value: Any) -> float:
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _from_body(policy_id: int, body: dict[str, Any]) -> Policy:
    team = body["team_id"]
    return Policy(
        id=policy_id,
        name=str(body["name"]),
        description=str(body["description"]),
        resolution=str(body["resolution"]),
        query=str(body["query"]),
        platform=str(body["platform"]),
        interval=int(body["interval"]),
        team_id=None if team is None else int(team),
        created_at=_epoch(body["created_at"]),
        updated_at=_epoch(body["updated_at"]),
    )
