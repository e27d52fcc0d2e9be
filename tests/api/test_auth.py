"""Stream authentication over real WebSockets: a socket without a token is refused with a
close code that says why, within the auth message's time limit, on both stream kinds."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from fleetwatch.api.auth import CLOSE_UNAUTHORIZED, WEBSOCKET_AUTH_TIMEOUT
from tests.server import RunningServer

#: Both WebSocket streams; authentication comes before the campaign or task is looked up.
STREAMS = ["/api/v1/fleet/results/websocket?campaign_id=1", "/core/local-query-tasks/x/stream"]


def closed_with(socket: ClientConnection) -> tuple[int, str, list[str]]:
    """Everything the server sent before closing, with the close code and reason. The
    receive timeout is generous: only a server that never closes fails it."""
    sent: list[str] = []
    try:
        while True:
            sent.append(str(socket.recv(timeout=WEBSOCKET_AUTH_TIMEOUT + 10)))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the server dropped the socket without a close frame"
        return closed.rcvd.code, closed.rcvd.reason, sent


@pytest.mark.parametrize("path", STREAMS)
def test_silent_socket_without_token_is_closed_4401(live_server: RunningServer, path: str) -> None:
    url = live_server.url.replace("http://", "ws://") + path
    with connect(url) as socket:
        code, reason, sent = closed_with(socket)
    assert code == CLOSE_UNAUTHORIZED
    assert "no token" in reason
    assert len(sent) == 1 and "Authorization: Bearer" in sent[0]


@pytest.mark.parametrize("path", STREAMS)
@pytest.mark.parametrize(
    "first, says",
    [
        ('{"type": "auth", "data": {"token": "wrong"}}', "unknown or revoked"),
        ('{"type": "hello"}', "first"),
        ("not json", "first"),
        ('{"type": "auth", "data": {}}', "data.token"),
    ],
)
def test_bad_auth_message_is_closed_4401(
    live_server: RunningServer, path: str, first: str, says: str
) -> None:
    url = live_server.url.replace("http://", "ws://") + path
    with connect(url) as socket:
        socket.send(first)
        code, reason, sent = closed_with(socket)
    assert code == CLOSE_UNAUTHORIZED and says in reason
    assert len(sent) == 1 and says in sent[0]
