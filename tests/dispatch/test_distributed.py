"""distributed/read holds: reads that arrive together do not expire together.

The read path is driven with wake-ups that record each hold instead of waiting it out, and
a fleet is stepped through check-in rounds on a virtual clock (no sleeping, no timing):
each host comes back `interval` plus its own round trip after its read expired.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedService
from fleetwatch.fleet.host_state import HostState

START = 1_760_000_000.0


class RecordingWakeups(HostWakeups):
    """Records how long each read would be held; nobody is ever woken."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: list[float] = []

    async def wait(
        self,
        host_id: int,
        timeout: float,
        when_gone: Callable[[Callable[[], None]], None] | None = None,
    ) -> bool:
        self.holds.append(timeout)
        return False


def _host(host_id: int, interval: int) -> HostState:
    return HostState(
        id=host_id,
        node_key_hash="",
        host_identifier=f"host-{host_id}",
        uuid="",
        hostname=f"host-{host_id}",
        platform="ubuntu",
        team_id=None,
        enrolled_at=START,
        seen_time=START,
        detail_updated_at=START,
        distributed_interval=interval,
        config_tls_refresh=0,
    )


def _service(tmp_path: Path, hold: float) -> tuple[DistributedService[HostState], RecordingWakeups]:
    wakeups = RecordingWakeups()
    settings = Settings(data_dir=tmp_path, distributed_hold=hold)
    return DistributedService[HostState](settings, wakeups), wakeups


async def _hold(
    service: DistributedService[HostState], wakeups: RecordingWakeups, host: HostState, at: float
) -> float:
    answer = await service.read(host, at, needs_accelerate=False)
    assert answer == {"queries": {}, "discovery": {}}
    return wakeups.holds[-1]


def _round_trip(host_id: int) -> float:
    """A host's own delay between a reply and its next read, beyond the interval: 10-50 ms."""
    return 0.01 + 0.04 * ((host_id * 7919) % 101) / 100


def _worst_bin(times: list[float], start: float, width: float, bins: int = 10) -> float:
    """The busiest of `bins` equal slices of [start, start + width), over the mean."""
    counts = [0] * bins
    for t in times:
        if start <= t < start + width:
            counts[int((t - start) / width * bins)] += 1
    return max(counts) / (sum(counts) / bins)


@pytest.mark.parametrize("hold", [1.0, 5.0, 10.0])
async def test_reads_arriving_together_expire_spread_over_the_whole_hold(
    tmp_path: Path, hold: float
) -> None:
    service, wakeups = _service(tmp_path, hold)
    holds = [await _hold(service, wakeups, _host(i, 1), START) for i in range(1, 1001)]
    assert all(0 <= h < hold for h in holds)
    # Ten equal slices of the hold window, each with a tenth of the reads.
    counts = [0] * 10
    for h in holds:
        counts[int(h / hold * 10)] += 1
    assert all(90 <= c <= 110 for c in counts), counts


@pytest.mark.parametrize(
    ("hold", "interval", "rounds"),
    [(5.0, 1, 3), (10.0, 1, 3), (1.0, 1, 4), (10.0, 10, 6), (5.0, 10, 10), (1.0, 10, 40)],
)
async def test_a_fleet_that_arrived_together_desynchronizes_within_a_few_rounds(
    tmp_path: Path, hold: float, interval: int, rounds: int
) -> None:
    hosts = [_host(i, interval) for i in range(1, 2001)]
    service, wakeups = _service(tmp_path, hold)
    # Every host answered the same campaign: their next reads arrive together.
    arrivals = [START + _round_trip(h.id) for h in hosts]
    expiries: list[float] = []
    after_rounds = 0.0
    for number in range(rounds + 4):
        deadlines = [
            a + await _hold(service, wakeups, h, a) for h, a in zip(hosts, arrivals, strict=True)
        ]
        expiries += deadlines
        if number == rounds - 1:
            after_rounds = max(deadlines)  # every host has done `rounds` rounds by then
        arrivals = [d + interval + _round_trip(h.id) for h, d in zip(hosts, deadlines, strict=True)]
    cycle = interval + 0.9 * hold
    # Over a cycle from then on, held reads expire evenly: no slice a quarter over the mean.
    assert _worst_bin(expiries, after_rounds, cycle) <= 1.25


async def test_settled_hosts_are_held_almost_the_whole_hold(tmp_path: Path) -> None:
    hold, interval = 5.0, 1
    hosts = [_host(i, interval) for i in range(1, 501)]
    service, wakeups = _service(tmp_path, hold)
    arrivals = [START] * len(hosts)
    for _ in range(8):
        holds = [await _hold(service, wakeups, h, a) for h, a in zip(hosts, arrivals, strict=True)]
        arrivals = [
            a + x + interval + _round_trip(h.id)
            for h, a, x in zip(hosts, arrivals, holds, strict=True)
        ]
    # Once spread, a host is held 0.9 x hold less its round trip (as long as before the
    # spreading), and never as long as the hold itself (osquery gives up at 16 s).
    assert sum(holds) / len(holds) >= 0.9 * hold - 0.06
    assert max(holds) < hold


async def test_no_hold_while_accelerated_or_with_hold_zero(tmp_path: Path) -> None:
    service, wakeups = _service(tmp_path, 5.0)
    answer = await service.read(_host(1, 1), START, needs_accelerate=True)
    assert answer["accelerate"] == 10 and wakeups.holds == []
    service, wakeups = _service(tmp_path, 0.0)
    assert await service.read(_host(1, 1), START, needs_accelerate=False) == {
        "queries": {},
        "discovery": {},
    }
    assert wakeups.holds == []
