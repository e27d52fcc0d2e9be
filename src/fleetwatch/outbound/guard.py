"""`OutboundGuard`: checks a URL before it is accepted, and an HTTP client whose every new
connection resolves the host, checks each address and connects to a checked one.

The check runs again at connect time because DNS may answer differently by then (DNS
rebinding: a harmless address when the URL is accepted, 127.0.0.1 when it is called). The
connection goes to the address that was checked, never to a second lookup's answer; the
Host header, TLS SNI and certificate check still use the name in the URL. Redirects are
not followed (a redirect is another URL nobody checked).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Sequence

import httpcore
import httpx

from fleetwatch.outbound.addresses import (
    AddressPolicy,
    IPAddress,
    Network,
    OutboundRefused,
    connect_form,
    literal_address,
)
from fleetwatch.outbound.resolver import Resolver, SystemResolver

log = logging.getLogger(__name__)

#: httpcore's socket option type (`setsockopt` arguments).
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class OutboundUnresolved(Exception):
    """The host of an outbound call has no address (the resolver failed)."""


class OutboundGuard:
    """The address policy and the resolver of user-aimed outbound calls."""

    def __init__(self, allow: Sequence[Network] = (), resolver: Resolver | None = None) -> None:
        self.policy = AddressPolicy(allow)
        #: Replaceable (tests answer names with a stub; nothing leaves loopback).
        self.resolver: Resolver = resolver or SystemResolver()

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses a call to `host` may connect to, every one checked.

        OutboundRefused when the host is malformed or any of its addresses is refused (a
        name with one inside address among public ones is refused as a whole);
        OutboundUnresolved when the name does not resolve."""
        try:
            literal = literal_address(host)
        except ValueError as exc:
            raise OutboundRefused(str(exc)) from None
        if literal is not None:
            self.policy.check(literal)
            return [connect_form(literal)]
        try:
            found = await self.resolver.resolve(host, port)
        except OSError as exc:
            log.debug("outbound host %s did not resolve: %s", host, exc)
            raise OutboundUnresolved(f"host {host} does not resolve") from None
        for address in found:
            if self.policy.refusal(address) is not None:
                log.info("outbound host %s refused: it resolves to %s", host, address)
            self.policy.check(address, host)
        return [connect_form(a) for a in found]

    async def check_url(self, url: str, timeout: float = 10.0) -> None:
        """Raise OutboundRefused / OutboundUnresolved unless `url` may be called now
        (OutboundUnresolved too when resolving takes longer than `timeout` seconds)."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise OutboundRefused(f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise OutboundRefused("expected an http:// or https:// URL with a host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            async with asyncio.timeout(timeout):
                await self.addresses(parsed.host, port)
        except TimeoutError:
            raise OutboundUnresolved(f"host {parsed.host} did not resolve in time") from None

    def client(
        self, timeout: float, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
    ) -> httpx.AsyncClient:
        """An HTTP client that connects only to checked addresses and follows no redirect
        (`ssl_context`: the CAs to trust, the system's by default).

        Requests raise OutboundRefused when the policy refuses the host at connect time."""
        return httpx.AsyncClient(
            transport=GuardedTransport(self, limits, ssl_context),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would connect for us, unchecked
        )


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting to the guard's checked addresses."""

    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.guard.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OutboundUnresolved as exc:
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception = httpcore.ConnectError(f"no address of {host} to connect to")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next checked address, as a resolver's client would
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool with the pinned network backend.

    httpx has no parameter for a network backend yet (encode/httpx#3749), so this builds
    the pool that `AsyncHTTPTransport.__init__` would, with the backend added; the pool is
    the transport's only state."""

    def __init__(
        self,
        guard: OutboundGuard,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # Not calling super().__init__: it would build (and load CA certificates for) a
        # second pool that is never used.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(guard),
        )
