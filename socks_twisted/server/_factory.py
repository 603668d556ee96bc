"""
The listening factory: shared settings and the session count.
"""

from collections.abc import Callable
from typing import cast

from twisted.cred.portal import Portal
from twisted.internet.interfaces import (
    IAddress,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ._outbound import ConnectReactor, endpointFor
from ._session import SOCKSServerProtocol

_log = Logger()

EndpointMaker = Callable[[str, int, float], IStreamClientEndpoint]


class SOCKSServerFactory(Factory):
    """
    Serve SOCKS4, SOCKS4a and SOCKS5 on every connection: the first byte
    tells which.

    @param reactor: Runs the timers; the default C{endpointFor} also dials
        targets with it, so it must then provide L{IReactorTCP} and
        L{IReactorPluggableNameResolver} too.
    @param portal: When given, SOCKS5 clients must pass RFC 1929
        username/password authentication against it, and SOCKS4 requests
        are refused unless C{allowSOCKS4WithAuth}.
    @param handshakeTimeout: Seconds from accepting a connection to its
        request being read, in total (not reset by each byte).
    @param connectTimeout: Seconds allowed to reach the target, name
        resolution included.
    @param idleTimeout: Seconds without a byte either way after which an
        established session is closed; C{None} for never.
    @param maxSessions: Sessions open at once; connections beyond it are
        closed as soon as they are accepted.
    @param endpointFor: Makes the endpoint that dials C{(host, port,
        timeout)}; by default TCP for IP literals and L{HostnameEndpoint} for
        names.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        portal: Portal | None = None,
        allowSOCKS4WithAuth: bool = False,
        handshakeTimeout: float = 30.0,
        connectTimeout: float = 30.0,
        idleTimeout: float | None = None,
        maxSessions: int = 1024,
        endpointFor: EndpointMaker | None = None,
    ) -> None:
        self.reactor = reactor
        self.portal = portal
        self.allowSOCKS4WithAuth = allowSOCKS4WithAuth
        self.handshakeTimeout = handshakeTimeout
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.maxSessions = maxSessions
        self.endpointFor: EndpointMaker = endpointFor or (
            lambda host, port, timeout: _defaultEndpoint(
                cast(ConnectReactor, reactor), host, port, timeout
            )
        )
        self.sessions: set[SOCKSServerProtocol] = set()

    def buildProtocol(self, addr: IAddress | None) -> SOCKSServerProtocol | None:
        if len(self.sessions) >= self.maxSessions:
            _log.warn(
                "refusing connection from {peer}: {count} sessions open, "
                "the limit (--max-sessions)",
                peer=addr,
                count=len(self.sessions),
            )
            return None
        protocol = SOCKSServerProtocol(self)
        self.sessions.add(protocol)
        return protocol

    def sessionClosed(self, protocol: SOCKSServerProtocol) -> None:
        """
        Forget a session whose client connection ended.
        """
        self.sessions.discard(protocol)


_defaultEndpoint = endpointFor
