"""Target resolution, exactly as Fleet documents it (reference §1.3), as a table of cases."""

from __future__ import annotations

import pytest

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.targets import LabelInfo, Targets, parse_targets, resolve_targets


def host(host_id: int, team_id: int | None) -> HostState:
    return HostState(
        id=host_id,
        node_key_hash=str(host_id),
        host_identifier=str(host_id),
        uuid="",
        hostname=f"h{host_id}",
        platform="ubuntu",
        team_id=team_id,
        enrolled_at=0.0,
        seen_time=None,
        detail_updated_at=None,
        distributed_interval=1,
        config_tls_refresh=0,
    )


HOSTS = [host(1, None), host(2, 1), host(3, 1), host(4, 2), host(5, 2), host(6, None)]
LABELS = {
    10: LabelInfo(10, builtin=True, all_hosts=True, members=frozenset(range(1, 7))),
    11: LabelInfo(11, builtin=True, members=frozenset({1, 2, 4})),  # e.g. "Ubuntu Linux"
    12: LabelInfo(12, builtin=True, members=frozenset({3, 5})),  # e.g. "macOS"
    20: LabelInfo(20, builtin=False, members=frozenset({2, 3, 6})),
    21: LabelInfo(21, builtin=False, members=frozenset({4})),
}


def resolve(
    hosts: tuple[int, ...] = (),
    labels: tuple[int, ...] = (),
    teams: tuple[int, ...] = (),
    everything: bool = False,
) -> set[int]:
    return resolve_targets(
        Targets(frozenset(hosts), frozenset(labels), frozenset(teams), everything),
        HOSTS,
        lambda h: h in {x.id for x in HOSTS},
        LABELS.get,
        lambda t: t in (1, 2),
    )


@pytest.mark.parametrize(
    "case, expected",
    [
        ({"hosts": [1]}, {1}),
        ({"everything": True}, {1, 2, 3, 4, 5, 6}),
        ({"labels": [10]}, {1, 2, 3, 4, 5, 6}),  # All Hosts selects everything
        ({"labels": [10], "teams": [1]}, {1, 2, 3, 4, 5, 6}),  # ... ignoring the rest
        ({"labels": [20]}, {2, 3, 6}),
        ({"labels": [20, 21]}, {2, 3, 4, 6}),  # custom labels OR-ed
        ({"labels": [11, 12]}, {1, 2, 3, 4, 5}),  # builtin labels OR-ed
        ({"labels": [11, 20]}, {2}),  # builtin AND custom
        ({"labels": [20], "teams": [1]}, {2, 3}),  # labels AND teams
        ({"teams": [1, 2]}, {2, 3, 4, 5}),  # teams OR-ed
        ({"teams": [0]}, {1, 6}),  # team 0: no team
        ({"hosts": [1], "teams": [2]}, {1, 4, 5}),  # hosts always included
        ({"hosts": [1], "labels": [21], "teams": [1]}, {1}),
        ({"labels": [12], "teams": [2]}, {5}),
    ],
)
def test_fleet_rules(case: dict[str, object], expected: set[int]) -> None:
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in case.items()}
    assert resolve(**args) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "case, message",
    [
        ({"hosts": [99]}, "no host with id 99"),
        ({"labels": [99]}, "no label with id 99"),
        ({"teams": [9]}, "no team with id 9"),
    ],
)
def test_unknown_ids(case: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        resolve(**{k: tuple(v) for k, v in case.items()})  # type: ignore[arg-type]


def test_both_request_forms() -> None:
    parsed = parse_targets(
        [{"type": "host", "id": 1}, {"type": "label", "id": 2}, {"type": "all"}],
        {"hosts": [3], "labels": [], "teams": [4]},
    )
    assert parsed == Targets(frozenset({1, 3}), frozenset({2}), frozenset({4}), True)
    assert parse_targets(None, None).empty
