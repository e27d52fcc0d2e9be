"""Canary samples: parsing, sizes, and that the choice is uniform."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fleetwatch.fleet.errors import Invalid
from fleetwatch.live.sample import Sample, choose, parse_sample


def test_parse() -> None:
    assert parse_sample(None) is None
    assert parse_sample({"percent": 10}) == Sample(percent=10.0)
    assert parse_sample({"percent": 0.5}) == Sample(percent=0.5)
    assert parse_sample({"count": 3}) == Sample(count=3)


@pytest.mark.parametrize(
    "value",
    [{"percent": 100.01}, {"percent": -1}, {"percent": True}, {"count": 0}, {"count": "2"}, []],
)
def test_parse_refuses(value: object) -> None:
    with pytest.raises(Invalid, match='send "sample"'):
        parse_sample(value)


@pytest.mark.parametrize(
    "sample, total, size",
    [
        (Sample(percent=10), 100, 10),
        (Sample(percent=10), 101, 11),  # rounded up
        (Sample(percent=0.1), 5, 1),  # at least one host
        (Sample(percent=100), 7, 7),
        (Sample(count=5), 3, 3),  # at most all
        (Sample(count=2), 3, 2),
    ],
)
def test_size(sample: Sample, total: int, size: int) -> None:
    assert sample.size(total) == size
    assert len(choose(range(total), sample, random.Random(1))) == size


def test_every_host_is_equally_likely() -> None:
    rng = random.Random(20)
    picks: Counter[int] = Counter()
    draws = 4000
    for _ in range(draws):
        picks.update(choose({10, 20, 30, 40}, Sample(count=1), rng))
    assert set(picks) == {10, 20, 30, 40}
    # each expected 1000 times; a biased choice (say, always the smallest id) fails this
    assert all(900 < n < 1100 for n in picks.values()), picks


def test_the_same_seed_chooses_the_same_hosts_whatever_the_set_order() -> None:
    hosts = list(range(50))
    first = choose(hosts, Sample(count=5), random.Random(7))
    assert choose(hosts[::-1], Sample(count=5), random.Random(7)) == first
