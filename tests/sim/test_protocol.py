"""Reply interpretation as osquery does it (status codes do not matter), and retry sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.sim.protocol import (
    RequestFailed,
    attempt_delay,
    enroll_delay,
    enrolled_key,
    interpret,
    logger_backoff,
)


def test_empty_body_is_success() -> None:
    assert interpret(b"") == {} and interpret(b"  ") == {}


@pytest.mark.parametrize(
    ("body", "message", "node_invalid"),
    [
        (b"<html>502</html>", "Cannot parse JSON", False),
        (b"[1, 2]", "not an object", False),
        (b'{"error": "busy"}', "Request failed: busy", False),
        (b'{"node_invalid": true}', "Invalid node key", True),
        (b'{"node_invalid": true, "error": "x"}', "Invalid node key: x", True),
    ],
)
def test_failures(body: bytes, message: str, node_invalid: bool) -> None:
    with pytest.raises(RequestFailed, match=message) as caught:
        interpret(body)
    assert caught.value.node_invalid is node_invalid


def test_node_invalid_false_is_fine() -> None:
    assert interpret(b'{"node_invalid": false, "options": {}}')["options"] == {}


def test_enroll_key_from_node_key_or_id() -> None:
    assert enrolled_key(b'{"node_key": "a"}') == "a"
    assert enrolled_key(b'{"id": "b"}') == "b"
    for bad in (b"", b'{"node_key": ""}', b'{"node_invalid": true}', b'{"node_key": 5}'):
        with pytest.raises(RequestFailed, match="No node key"):
            enrolled_key(bad)
    with pytest.raises(RequestFailed, match="Cannot parse JSON"):
        enrolled_key(b"<html>")


def test_osquery_retry_schedules() -> None:
    assert [attempt_delay(i) for i in (1, 2)] == [1, 4]
    assert [enroll_delay(s, 600) for s in (1, 2, 3, 30)] == [1, 4, 9, 600]
    assert [logger_backoff(4, n, 3600) for n in (0, 1, 2, 3, 100)] == [4, 4, 16, 36, 3600]


@given(st.integers(1, 10_000), st.floats(1, 1000), st.floats(0.001, 2))
def test_enroll_delay_is_capped(step: int, cap: float, unit: float) -> None:
    assert 0 < enroll_delay(step, cap, unit) <= cap * unit
