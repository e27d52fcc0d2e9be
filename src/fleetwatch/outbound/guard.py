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
import contextlib
import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence

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


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over httpcore's connection pool with the pinned network backend.

    Built from public APIs only: httpx's `AsyncHTTPTransport` takes no network backend
    (encode/httpx#3749), and reaching into its private pool would break silently with an
    httpx release. So this is the small adapter `AsyncHTTPTransport` is: an httpx request
    becomes an httpcore request, the response's stream is handed back as it arrives, and
    httpcore's errors become httpx's (an `OutboundRefused` passes as it is)."""

    def __init__(
        self,
        guard: OutboundGuard,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(guard),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("the guarded transport sends async request bodies only")
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            core_response = await self.pool.handle_async_request(core_request)
        stream = core_response.stream
        if not isinstance(stream, AsyncIterable):  # httpcore's async pool never does this
            raise TypeError("httpcore answered an async request with a sync stream")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(stream, request),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    """httpcore's response body as httpx reads it, with httpcore's errors as httpx's."""

    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self.stream = stream
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self.request):
            async for chunk in self.stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self.stream, "aclose", None)
        if close is not None:
            with _httpx_errors(self.request):
                await close()


#: httpcore's errors and the httpx errors they are (most specific first).
_ERRORS: tuple[tuple[type[Exception], type[httpx.RequestError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc), request=request) from exc
        raise
