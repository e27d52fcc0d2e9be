"""Host identities: deterministic from the seed, unique across a fleet."""

from __future__ import annotations

from fleetwatch.sim.profile import calendar_time, make_profile

NOW = 1_760_000_000.0


def test_same_seed_same_host_other_seed_other_host() -> None:
    assert make_profile(7, 3, "ubuntu", NOW) == make_profile(7, 3, "ubuntu", NOW)
    assert make_profile(7, 3, "ubuntu", NOW).uuid != make_profile(8, 3, "ubuntu", NOW).uuid


def test_hostnames_and_uuids_are_unique_across_a_fleet() -> None:
    profiles = [make_profile(1, i, name, NOW) for i in range(600) for name in ("darwin",)]
    profiles += [make_profile(1, i, "windows", NOW) for i in range(600, 1200)]
    assert len({p.hostname for p in profiles}) == len(profiles)
    assert len({p.uuid for p in profiles}) == len(profiles)


def test_calendar_time_is_osquery_format() -> None:
    assert calendar_time(1759752000) == "Mon Oct  6 12:00:00 2025 UTC"
