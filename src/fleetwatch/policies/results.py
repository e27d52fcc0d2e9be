"""Each host's latest answer to each policy, followed from the change log, and the counts.

The answers are `fleet:policy-result` documents; this is their in-memory mirror, kept in
step by an index listener (so on a cluster every node sees every node's answers), and the
pass/fail counters move with each change: counts are current as soon as an answer is
committed, never recomputed on a schedule. A deleted host's or policy's answers leave with
their documents (`PolicyService` deletes them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fleetwatch.index import Action, Change, DocumentIndex
from fleetwatch.policies.model import FAIL, PASS, RESULT_KIND
from fleetwatch.query.listing import Listing, read_page

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """One host's latest answer to one policy, as its document says."""

    response: str
    error: str
    team_id: int | None
    hostname: str


def parse_result_link(link: str) -> tuple[int, int] | None:
    """(policy id, host id) of `/fleet/policies/{id}/hosts/{host_id}`."""
    parts = link.split("/")
    if len(parts) != 6 or parts[1:3] != ["fleet", "policies"] or parts[4] != "hosts":
        return None
    if not (parts[3].isdigit() and parts[5].isdigit()):
        return None
    return int(parts[3]), int(parts[5])


class PolicyResults:
    """Answers per policy and host, with running pass/fail counts."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index
        self._answers: dict[int, dict[int, Answer]] = {}
        #: policy id -> the answering hosts' team -> [passing, failing]
        self._counts: dict[int, dict[int | None, list[int]]] = {}
        self._listening = False

    async def load(self) -> None:
        """Follow the change log, then read the stored answers (what the listener saw
        meanwhile is newer than the read and is kept)."""
        self.index.add_listener(self._on_changes)
        self._listening = True
        page = await read_page(self.index.db, Listing(kind=RESULT_KIND))
        for link, body in page.documents:
            ids = parse_result_link(str(link))
            if ids is not None and isinstance(body, dict) and self.answer(*ids) is None:
                self._set(*ids, _answer(body))

    def stop(self) -> None:
        if self._listening:
            self.index.remove_listener(self._on_changes)
            self._listening = False

    def _on_changes(self, batch: Sequence[Change]) -> None:
        for change in batch:
            if change.kind == RESULT_KIND:
                ids = parse_result_link(change.self_link)
                if ids is None:
                    continue
                if change.action is Action.DELETE:
                    self._set(*ids, None)
                else:
                    self._set(*ids, _answer(change.body))

    def _set(self, policy_id: int, host_id: int, answer: Answer | None) -> None:
        answers = self._answers.setdefault(policy_id, {})
        teams = self._counts.setdefault(policy_id, {})
        before = answers.pop(host_id, None)
        if before is not None:
            _count(teams.setdefault(before.team_id, [0, 0]), before.response, -1)
        if answer is not None:
            answers[host_id] = answer
            _count(teams.setdefault(answer.team_id, [0, 0]), answer.response, 1)

    def forget_policy(self, policy_id: int) -> None:
        self._answers.pop(policy_id, None)
        self._counts.pop(policy_id, None)

    # --- reads -------------------------------------------------------------------------

    def answer(self, policy_id: int, host_id: int) -> Answer | None:
        return self._answers.get(policy_id, {}).get(host_id)

    def pairs(self) -> list[tuple[int, int]]:
        """Every (policy id, host id) with an answer."""
        return [(p, h) for p, answers in self._answers.items() for h in answers]

    def answers(self, policy_id: int) -> dict[int, Answer]:
        return self._answers.get(policy_id, {})

    def counts(self, policy_id: int, teams: set[int] | None = None) -> tuple[int, int]:
        """(passing, failing) hosts (of `teams` when given: hosts of no team are not)."""
        passing = failing = 0
        for team, (p, f) in self._counts.get(policy_id, {}).items():
            if teams is None or team in teams:
                passing += p
                failing += f
        return passing, failing


def _count(counts: list[int], response: str, delta: int) -> None:
    if response == PASS:
        counts[0] += delta
    elif response == FAIL:
        counts[1] += delta


def _answer(body: dict[str, object]) -> Answer:
    team = body.get("team_id")
    return Answer(
        response=str(body.get("response") or ""),
        error=str(body.get("error") or ""),
        team_id=team if isinstance(team, int) and not isinstance(team, bool) else None,
        hostname=str(body.get("hostname") or ""),
    )
