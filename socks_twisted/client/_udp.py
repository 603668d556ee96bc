"""
UDP through a SOCKS5 proxy (RFC 1928 section 7): a UDP ASSOCIATE on a TCP
control connection, and a local UDP socket that talks to the proxy's relay
through the association's transport
(L{socks_twisted.client._association}), which adds and removes the SOCKS5
UDP request header.

The control connection is made by the CONNECT machinery of
L{socks_twisted.client._handshake} (negotiation, authentication,
cancellation, handshake timeout, error mapping): its "application" is a
small protocol that opens the UDP socket when the proxy replies and ends the
association when the connection is lost.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.address import HostnameAddress, IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.python.failure import Failure

from .._addresses import isUnspecified
from .._wire import (
    Command,
    normalizeIP,
)
from ..errors import SOCKSError, SOCKSProtocolError
from ._association import SOCKS5UDPAssociation
from ._endpoints import DEFAULT_HANDSHAKE_TIMEOUT, Methods, _SOCKS5Requester
from ._gssapi import GSSAPIOptions
from ._handshake import makeError
from ._tunnel import SOCKSTunnelTransport

#: The largest datagram the local UDP socket reads: a whole IPv4 or IPv6
#: UDP payload, so that no reply from the relay is cut short.
MAX_DATAGRAM = 65535


def relayAddress(bound: IAddress, proxyAddress: IAddress) -> tuple[str, int]:
    """
    Where to send datagrams, from the BND address of a UDP ASSOCIATE reply.

    An unspecified BND.ADDR (C{0.0.0.0} or C{::}) means the proxy's own
    address (the common convention), with BND.PORT.

    @param bound: The BND address of the reply.
    @param proxyAddress: The proxy's address, as the control connection
        reports it.
    @raise SOCKSError: The relay is named by a name, or the proxy's address
        is needed and is not an IP address (a proxy reached through a UNIX
        socket or by name through another proxy).
    @raise SOCKSProtocolError: BND.PORT is 0.
    """
    if isinstance(bound, HostnameAddress):
        raise makeError(
            SOCKSError,
            "the proxy named its UDP relay by a name "
            f"({bound.hostname.decode('ascii', 'replace')}); only IP addresses "
            "are supported",
        )
    assert isinstance(bound, IPv4Address | IPv6Address)
    if bound.port == 0:
        raise makeError(SOCKSProtocolError, "the proxy's UDP relay port is 0")
    host = normalizeIP(bound.host)
    if isUnspecified(host):
        if not isinstance(proxyAddress, IPv4Address | IPv6Address):
            raise makeError(
                SOCKSError,
                f"the proxy answered relay address {host} and its own address "
                f"({proxyAddress}) is not an IP address to send datagrams to",
            )
        host = normalizeIP(proxyAddress.host)
    return host, bound.port


class _ControlProtocol(Protocol):
    """
    The application protocol of the control connection: opens the local UDP
    socket and connects the caller's protocol once the proxy replied, and
    ends the association when the connection is lost.
    """

    def __init__(
        self,
        reactor: IReactorUDP,
        protocol: DatagramProtocol,
        interface: str | None,
        answersFromNames: bool = False,
    ) -> None:
        self._reactor = reactor
        self._protocol = protocol
        self._interface = interface
        self._answersFromNames = answersFromNames
        self.association: SOCKS5UDPAssociation | None = None

    def connectionMade(self) -> None:
        """
        The proxy granted the association: open the UDP socket, on the
        relay's address family, and start the caller's protocol.  An
        exception here fails the C{associate} attempt (and aborts the
        control connection).
        """
        control = self.transport
        assert isinstance(control, SOCKSTunnelTransport)
        relay = relayAddress(control.proxyBoundAddress, control.proxyAddress)
        ipv6 = ":" in relay[0]
        interface = self._interface
        if interface is None:
            local = control.getHost()
            if (
                isinstance(local, IPv4Address | IPv6Address)
                and (":" in local.host) == ipv6
            ):
                interface = normalizeIP(local.host)
            else:
                interface = "::" if ipv6 else ""
        association = SOCKS5UDPAssociation(
            self._protocol, relay, control, self._answersFromNames
        )
        port = self._reactor.listenUDP(
            0, association._newReceiver(), interface, MAX_DATAGRAM
        )
        self.association = association
        association._listening(port)

    def dataReceived(self, data: bytes) -> None:
        """
        The proxy has nothing to say on the control connection after its
        reply; ignore whatever it sends.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        End the association.
        """
        if self.association is not None:
            self.association._controlLost(reason)


class _ControlFactory(Factory):
    noisy = False

    def __init__(
        self,
        reactor: IReactorUDP,
        protocol: DatagramProtocol,
        interface: str | None,
        answersFromNames: bool = False,
    ) -> None:
        self._reactor = reactor
        self._protocol = protocol
        self._interface = interface
        self._answersFromNames = answersFromNames

    def buildProtocol(self, addr: IAddress | None) -> _ControlProtocol:
        return _ControlProtocol(
            self._reactor, self._protocol, self._interface, self._answersFromNames
        )


class SOCKS5UDPClient(_SOCKS5Requester):
    """
    Open UDP associations through a SOCKS5 proxy (RFC 1928), with no
    authentication or with a username and password (RFC 1929).

    The request names DST.ADDR C{0.0.0.0} and DST.PORT 0: the client's
    address and port are not known before the reply (the local socket is
    opened on the family of the relay's address), and the proxy then
    accepts datagrams from the control connection's IP address.
    """

    _command = Command.UDP_ASSOCIATE
    _lowestPort = 0

    def __init__(
        self,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        methods: Methods | None = None,
        credentials: tuple[str | bytes, str | bytes] | None = None,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        interface: str | None = None,
        reactor: IReactorTime | None = None,
        answersFromNames: bool = False,
        gssapi: GSSAPIOptions | None = None,
    ) -> None:
        """
        @param proxyEndpoint: The endpoint that connects to the proxy (the
            control connection).
        @param methods: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.
        @param credentials: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.
        @param handshakeTimeout: Seconds from the connection to the proxy to
            its reply; C{None} waits forever.
        @param interface: The local address to open the UDP socket on.  By
            default the local address of the control connection when it is
            of the relay's family (so that datagrams leave from the IP address
            the proxy expects), else every interface of that family.
        @param reactor: Provides C{listenUDP} and the clock; the global reactor
            if C{None}.  Typed as
            L{IReactorTime<twisted.internet.interfaces.IReactorTime>}, which
            the global reactor's declared type provides; C{IReactorUDP} is
            checked when the client is made.
        @param answersFromNames: Give the protocol the C{(name, port)} it
            wrote to, instead of the address the relay reports, for answers
            to datagrams sent to a name, so that protocols that check where
            an answer came from (C{twisted.names.dns.DNSDatagramProtocol}
            checks it is the address queried) accept them.  The first answer
            from a new address on a port where exactly one name is still
            unmatched is attributed to that name, and so is every later one
            from that address; otherwise the address is reported.  Off by
            default: answers then name the address the relay reports.
        @param gssapi: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.
            Under integrity or confidentiality every datagram, header
            included, goes wrapped in one GSS-API message, both ways.

        @raise ValueError: The credentials cannot be sent, the methods are not
            ones this client implements, or the reactor cannot listen on UDP.
        """
        super().__init__(
            "0.0.0.0",
            0,
            proxyEndpoint,
            resolveLocally=False,
            handshakeTimeout=handshakeTimeout,
            reactor=reactor,
        )
        if reactor is not None and not IReactorUDP.providedBy(reactor):
            raise ValueError("the reactor must provide IReactorUDP")
        self._authenticate(methods, credentials, gssapi)
        self._interface = interface
        self._answersFromNames = answersFromNames

    def __repr__(self) -> str:
        return f"<SOCKS5UDPClient via {self._proxyEndpoint!r}>"

    def associate(self, protocol: DatagramProtocol) -> Deferred[SOCKS5UDPAssociation]:
        """
        Open an association and connect C{protocol} to it.

        @param protocol: A protocol not connected to any transport.  Its
            C{startProtocol} runs before the returned
            L{Deferred<twisted.internet.defer.Deferred>} fires, its
            C{stopProtocol} when the association ends.
        @return: A L{Deferred<twisted.internet.defer.Deferred>} that fires
            with the L{SOCKS5UDPAssociation} (also C{protocol.transport}), or
            fails as the CONNECT endpoints' C{connect} does, or with the
            L{twisted.internet.error.CannotListenError} of the local socket,
            or with what C{startProtocol} raised.  Cancelling it before it
            fires fails it with
            L{twisted.internet.error.ConnectingCancelledError} and aborts the
            connection to the proxy.
        """
        if protocol.transport is not None:
            return fail(ValueError(f"{protocol!r} is already connected"))
        reactor = cast(IReactorUDP, self._getReactor())
        attempt = self._start(
            _ControlFactory(reactor, protocol, self._interface, self._answersFromNames)
        )

        def associated(control: IProtocol) -> SOCKS5UDPAssociation:
            assert isinstance(control, _ControlProtocol)
            assert control.association is not None
            return control.association

        return attempt.deferred.addCallback(associated)
