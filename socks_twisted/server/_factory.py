"""
The listening factory: shared settings and the session count.
"""

from collections.abc import Callable
from typing import cast

from twisted.cred.portal import Portal
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IReactorPluggableNameResolver,
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger

from ._outbound import ConnectReactor, endpointFor
from ._resolve import resolveName
from ._session import SOCKSServerProtocol
from ._udp import Resolver

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
    @param bindTimeout: Seconds a BIND listener waits for its peer.
    @param udpTimeout: Seconds without a datagram either way after which a
        UDP association ends.
    @param externalAddress: The IP that BIND and UDP ASSOCIATE replies name
        instead of the listener's own (the server's public address behind
        NAT); C{None} to name the address the client reached us at.
    @param endpointFor: Makes the endpoint that dials C{(host, port,
        timeout)}; by default TCP for IP literals and L{HostnameEndpoint} for
        names.
    @param listenFor: Makes the endpoint a BIND listener listens on, given
        the interface; by default TCP on an ephemeral port.
    @param listenUDP: Opens the UDP port of an association on an interface;
        by default the reactor's, on an ephemeral port.
    @param resolve: Resolves a name to the addresses of one family (for BIND
        peers and UDP targets); by default the reactor's resolver.
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
        bindTimeout: float = 120.0,
        udpTimeout: float = 300.0,
        externalAddress: str | None = None,
        endpointFor: EndpointMaker | None = None,
        listenFor: Callable[[str], IStreamServerEndpoint] | None = None,
        listenUDP: Callable[[str, DatagramProtocol], IListeningPort] | None = None,
        resolve: Resolver | None = None,
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
                cast(_FullReactor, reactor), host, port, timeout
            )
        )
        self.bindTimeout = bindTimeout
        self.udpTimeout = udpTimeout
        self.externalAddress = externalAddress
        full = cast(_FullReactor, reactor)
        self.listenFor: Callable[[str], IStreamServerEndpoint] = listenFor or (
            lambda interface: _listenerFor(full, interface)
        )
        self.listenUDP: Callable[[str, DatagramProtocol], IListeningPort] = (
            listenUDP or (lambda interface, p: full.listenUDP(0, p, interface, 65535))
        )
        self.resolve: Resolver = resolve or (
            lambda name, family: resolveName(full, name, family)
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


class _FullReactor(ConnectReactor, IReactorUDP, IReactorPluggableNameResolver):
    """
    What the default dialler, listeners and resolver need of a reactor.
    """


def _listenerFor(reactor: _FullReactor, interface: str) -> IStreamServerEndpoint:
    if ":" in interface:
        return TCP6ServerEndpoint(reactor, 0, interface=interface)
    return TCP4ServerEndpoint(reactor, 0, interface=interface)
