"""Policy results mirrored from the change log: counts move with each answer, a restart
reads them back (a deleted host's answers leave with their documents: tests/policies/
test_service.py)."""

from __future__ import annotations

from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.policies.model import RESULT_KIND, result_link
from fleetwatch.policies.results import PolicyResults, parse_result_link


def answer(policy_id: int, host_id: int, response: str) -> Write:
    body = {"policy_id": policy_id, "host_id": host_id, "response": response, "error": ""}
    return Write(Action.PUT, result_link(policy_id, host_id), RESULT_KIND, body)


def test_result_links() -> None:
    assert parse_result_link("/fleet/policies/3/hosts/12") == (3, 12)
    assert parse_result_link("/fleet/policies/3") is None
    assert parse_result_link("/fleet/policies/x/hosts/1") is None
    assert parse_result_link("/fleet/labels/3/hosts/1") is None


async def test_counts_follow_changes_and_reload(index: DocumentIndex) -> None:
    results = PolicyResults(index)
    await results.load()
    await index.apply([answer(1, 1, "pass"), answer(1, 2, "fail"), answer(1, 3, "")])
    assert results.counts(1) == (1, 1)
    await index.write(answer(1, 2, "pass"))
    assert results.counts(1) == (2, 0)
    await index.write(Write(Action.DELETE, result_link(1, 1)))
    assert results.counts(1) == (1, 0)
    results.stop()
    again = PolicyResults(index)
    await again.load()
    assert again.counts(1) == (1, 0)
    assert {h: a.response for h, a in again.answers(1).items()} == {2: "pass", 3: ""}
    again.stop()
