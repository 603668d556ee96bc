"""
HTTP and HTTPS through a SOCKS proxy with L{twisted.web.client.Agent}.
"""

from __future__ import annotations

from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Methods,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    checkVersionOptions,
)
from ._gssapi import GSSAPIOptions


@implementer(IAgentEndpointFactory)
class SOCKSAgentEndpointFactory:
    """
    Build, for each request URI, an endpoint that reaches its host through a
    SOCKS proxy; with TLS (checked by C{contextFactory}) for C{https}.

    Use with
    L{Agent.usingEndpointFactory<twisted.web.client.Agent.usingEndpointFactory>},
    or use L{socksAgent}.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        version: int = 5,
        methods: Methods | None = None,
        credentials: tuple[str | bytes, str | bytes] | None = None,
        gssapi: GSSAPIOptions | None = None,
        userID: str | bytes = b"",
        resolveLocally: bool = False,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        contextFactory: IPolicyForHTTPS | None = None,
    ) -> None:
        """
        @param reactor: Passed to the endpoints.
        @param proxyEndpoint: Connects to the proxy.
        @param version: 5 for SOCKS5, 4 for SOCKS4 / SOCKS4a.
        @param methods: SOCKS5 only; see L{SOCKS5ClientEndpoint}.
        @param credentials: SOCKS5 only; see L{SOCKS5ClientEndpoint}.
        @param gssapi: SOCKS5 only; see L{SOCKS5ClientEndpoint}.
        @param userID: SOCKS4 only; see L{SOCKS4ClientEndpoint}.
        @param resolveLocally: See the endpoints.
        @param handshakeTimeout: See the endpoints.
        @param contextFactory: Makes the TLS settings for C{https}; the
            default, like L{Agent<twisted.web.client.Agent>}'s, verifies the
            server against the system's trust roots.

        @raise ValueError: C{version} is neither 4 nor 5, or an option does
            not belong to that version.
        """
        checkVersionOptions(version, methods, credentials, userID)
        self._reactor = reactor
        self._proxyEndpoint = proxyEndpoint
        self._version = version
        self._methods = methods
        self._credentials = credentials
        if gssapi is not None and version != 5:
            raise ValueError("gssapi is for SOCKS5")
        self._gssapi = gssapi
        self._userID = userID
        self._resolveLocally = resolveLocally
        self._handshakeTimeout = handshakeTimeout
        self._policy: IPolicyForHTTPS = (
            contextFactory
            if contextFactory is not None
            else BrowserLikePolicyForHTTPS()
        )

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """
        The endpoint for C{uri}: through the proxy to its host and port, with
        TLS for C{https}.

        @raise SchemeNotSupported: The scheme is neither C{http} nor
            C{https}.
        """
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
        host: bytes = uri.host
        if host.startswith(b"[") and host.endswith(b"]"):
            host = host[1:-1]
        endpoint: IStreamClientEndpoint
        if self._version == 5:
            endpoint = SOCKS5ClientEndpoint(
                host,
                uri.port,
                self._proxyEndpoint,
                methods=self._methods,
                credentials=self._credentials,
                gssapi=self._gssapi,
                resolveLocally=self._resolveLocally,
                handshakeTimeout=self._handshakeTimeout,
                reactor=self._reactor,
            )
        else:
            endpoint = SOCKS4ClientEndpoint(
                host,
                uri.port,
                self._proxyEndpoint,
                userID=self._userID,
                resolveLocally=self._resolveLocally,
                handshakeTimeout=self._handshakeTimeout,
                reactor=self._reactor,
            )
        if uri.scheme == b"https":
            creator = self._policy.creatorForNetloc(host, uri.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint


def socksAgent(
    reactor: IReactorTime,
    proxyEndpoint: IStreamClientEndpoint,
    *,
    pool: HTTPConnectionPool | None = None,
    version: int = 5,
    methods: Methods | None = None,
    credentials: tuple[str | bytes, str | bytes] | None = None,
    userID: str | bytes = b"",
    resolveLocally: bool = False,
    handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    contextFactory: IPolicyForHTTPS | None = None,
    gssapi: GSSAPIOptions | None = None,
) -> Agent:
    """
    An L{Agent<twisted.web.client.Agent>} that makes every request through
    the SOCKS proxy that C{proxyEndpoint} connects to.  The other parameters
    are those of L{SOCKSAgentEndpointFactory}.

    @param pool: The connection pool.  By default a new persistent
        L{HTTPConnectionPool<twisted.web.client.HTTPConnectionPool>} that
        belongs to this agent alone: the pool keys its connections by scheme,
        host and port only, so a pool shared with a direct agent (or one using
        another proxy) could hand this agent a connection that does not go
        through this proxy.  Pass your own to close its idle connections
        (C{pool.closeCachedConnections()}).
    """
    endpointFactory = SOCKSAgentEndpointFactory(
        reactor,
        proxyEndpoint,
        version=version,
        methods=methods,
        credentials=credentials,
        gssapi=gssapi,
        userID=userID,
        resolveLocally=resolveLocally,
        handshakeTimeout=handshakeTimeout,
        contextFactory=contextFactory,
    )
    if pool is None:
        pool = HTTPConnectionPool(reactor, persistent=True)
    agent: Agent = Agent.usingEndpointFactory(reactor, endpointFactory, pool=pool)
    return agent
