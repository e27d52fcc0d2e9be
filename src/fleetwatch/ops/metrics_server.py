"""An unauthenticated `/metrics` listener on its own port (`--metrics-port`).

Bind it (`--metrics-host`) to an address only the monitoring network reaches. It is a tiny
HTTP/1.0 server on the app's own event loop: the collectors read the services from the loop
thread, never concurrently with it (prometheus_client's own server runs in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fleetwatch.ops.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves GET /metrics, without authentication, until stopped."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("serving /metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while True:  # skip the headers
                line = await asyncio.wait_for(reader.readline(), 10)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE, self.metrics.render()
            else:
                status, ctype = "404 Not Found", "application/json"
                body = b'{"error": "only GET /metrics is served on this port"}'
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
