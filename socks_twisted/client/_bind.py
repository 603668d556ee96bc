"""
BIND through a SOCKS4, SOCKS4a or SOCKS5 proxy: ask the proxy to listen for
one incoming connection, learn the address the peer must connect to (the
first reply), and connect an application protocol to that peer once it has
connected (the second reply).

This reuses the CONNECT machinery of L{socks_twisted.client._handshake}: the
same negotiation, authentication, cancellation, timeouts and error mapping.
Only the first reply is new, and it is reported by a L{SOCKSClientProtocol}
subclass to a L{ConnectAttempt} subclass.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure

from .._addresses import TunnelAddress, addressFor, orProxyAddress
from .._wire import (
    Command,
    HandshakeState,
    SOCKS4Reply,
    SOCKS5Reply,
)
from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Methods,
    _SOCKS4Requester,
    _SOCKS5Requester,
    _SOCKSRequester,
)
from ._gssapi import GSSAPIOptions
from ._handshake import ConnectAttempt, Negotiation, SOCKSClientProtocol


def announcedAddress(
    reply: SOCKS5Reply | SOCKS4Reply, proxyAddress: IAddress
) -> TunnelAddress:
    """
    The address a peer must connect to, from a first BIND reply.

    Proxies that listen on every interface often answer BND.ADDR C{0.0.0.0}
    (or C{::}); the common convention, which this follows, is that the peer
    then connects to the proxy's own address, with BND.PORT.

    @param reply: The first reply.
    @param proxyAddress: The address of the proxy, as the connection to it
        reports it.
    """
    return orProxyAddress(addressFor(reply.host, reply.port), proxyAddress)


class PendingBind:
    """
    A proxy listening for one peer on our behalf: what the first BIND reply
    said.

    @ivar address: Where the peer must connect to: the proxy's BND.ADDR and
        BND.PORT, or, when BND.ADDR is C{0.0.0.0} or C{::}, the proxy's own
        address with BND.PORT.  An
        L{IPv4Address<twisted.internet.address.IPv4Address>} or
        L{IPv6Address<twisted.internet.address.IPv6Address>} (type C{"TCP"}),
        or a L{HostnameAddress<twisted.internet.address.HostnameAddress>} if
        the proxy answered with a name.
    @ivar proxyBoundAddress: BND.ADDR and BND.PORT as the proxy sent them.
    @ivar proxyAddress: The address of the proxy, as the connection to it
        reports it.
    """

    def __init__(
        self,
        address: TunnelAddress,
        proxyBoundAddress: TunnelAddress,
        proxyAddress: IAddress,
        accepted: Deferred[IProtocol],
    ) -> None:
        self.address = address
        self.proxyBoundAddress = proxyBoundAddress
        self.proxyAddress = proxyAddress
        self._accepted = accepted

    def __repr__(self) -> str:
        return f"<PendingBind at {self.address} via {self.proxyAddress}>"

    def accepted(self) -> Deferred[IProtocol]:
        """
        The peer's connection.

        @return: The same L{Deferred<twisted.internet.defer.Deferred>} on
            every call.  It fires, after the proxy's second reply, with the
            protocol the factory given to C{bind} built for the peer; that
            protocol's transport is a
            L{socks_twisted.client.SOCKSTunnelTransport} whose C{getPeer()} is
            the peer's address from the second reply.  It fails with a
            L{socks_twisted.errors.SOCKSError} (the proxy refused the peer,
            for instance SOCKS5 reply 2 or SOCKS4 reply 91 when it came from
            the wrong address, or closed the connection), with
            L{twisted.internet.error.TimeoutError} (C{acceptTimeout}), or,
            when cancelled, with
            L{twisted.internet.error.ConnectingCancelledError}; the
            connection to the proxy is then aborted.
        """
        return self._accepted


class _BindProtocol(SOCKSClientProtocol):
    """
    The handshake protocol of a BIND: reports the first successful reply to
    its attempt, then waits for the second, which connects the application
    as a CONNECT's only reply does.
    """

    def __init__(self, attempt: BindAttempt, negotiation: Negotiation) -> None:
        super().__init__(attempt, negotiation)
        self._bindAttempt = attempt
        self._firstReply: SOCKS5Reply | SOCKS4Reply | None = None

    def replyReceived(self, reply: SOCKS5Reply | SOCKS4Reply) -> None:
        """
        Report the first reply; give the second to the CONNECT machinery,
        with the peer it names as the application's peer.
        """
        if not reply.succeeded:
            super().replyReceived(reply)
        elif self._connection.state is HandshakeState.ESTABLISHED:
            self._bindAttempt.target = addressFor(reply.host, reply.port)
            super().replyReceived(reply)
        else:
            self._firstReply = reply
            self._waitingFor = "the second BIND reply (the peer's connection)"
            assert self.transport is not None
            self._bindAttempt.listening(reply, self.transport.getPeer())

    def boundAddress(self, reply: SOCKS5Reply | SOCKS4Reply) -> TunnelAddress:
        """
        The address the proxy listened on, from the first reply.
        """
        first = self._firstReply if self._firstReply is not None else reply
        return addressFor(first.host, first.port)


class BindAttempt(ConnectAttempt):
    """
    One C{bind()}: a L{ConnectAttempt} whose caller holds L{ready} until the
    first reply, then L{PendingBind.accepted} (the attempt's C{deferred}).

    The handshake timeout runs until the first reply; then C{acceptTimeout},
    if any, until the second.

    @ivar ready: Fires with the L{PendingBind} after the first reply.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        factory: IProtocolFactory,
        target: IAddress,
        handshakeTimeout: float | None,
        acceptTimeout: float | None,
    ) -> None:
        super().__init__(reactor, factory, target, handshakeTimeout)
        self.ready: Deferred[PendingBind] = Deferred(self._cancel)
        self._acceptTimeout = acceptTimeout

    def handshakeProtocol(self, negotiation: Negotiation) -> SOCKSClientProtocol:
        """
        A handshake protocol that reports the first reply.
        """
        return _BindProtocol(self, negotiation)

    def report(self, reason: Failure) -> None:
        """
        Fail L{ready} until it fired, then the
        L{Deferred<twisted.internet.defer.Deferred>} of L{PendingBind.accepted}.
        """
        if not self.ready.called:
            self.ready.errback(reason)
        else:
            self.deferred.errback(reason)

    def listening(
        self, reply: SOCKS5Reply | SOCKS4Reply, proxyAddress: IAddress
    ) -> None:
        """
        The proxy listens: switch from the handshake timeout to the accept
        timeout and tell the caller where the peer must connect.
        """
        self.startTimer(
            self._acceptTimeout,
            f"no peer connected to the proxy's BIND listener within "
            f"{self._acceptTimeout} seconds",
        )
        self.ready.callback(
            PendingBind(
                announcedAddress(reply, proxyAddress),
                addressFor(reply.host, reply.port),
                proxyAddress,
                self.deferred,
            )
        )


class _BindClient(_SOCKSRequester):
    """
    What both BIND clients share.
    """

    _command = Command.BIND
    _lowestPort = 0

    def __init__(
        self,
        host: str | bytes,
        port: int,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        resolveLocally: bool,
        handshakeTimeout: float | None,
        acceptTimeout: float | None,
        reactor: IReactorTime | None,
    ) -> None:
        super().__init__(
            host,
            port,
            proxyEndpoint,
            resolveLocally=resolveLocally,
            handshakeTimeout=handshakeTimeout,
            reactor=reactor,
        )
        if acceptTimeout is not None and acceptTimeout <= 0:
            raise ValueError("acceptTimeout must be positive or None")
        self._acceptTimeout = acceptTimeout

    def _newAttempt(
        self, reactor: IReactorTime, protocolFactory: IProtocolFactory, target: IAddress
    ) -> BindAttempt:
        return BindAttempt(
            reactor,
            protocolFactory,
            target,
            self._handshakeTimeout,
            self._acceptTimeout,
        )

    def bind(self, protocolFactory: IProtocolFactory) -> Deferred[PendingBind]:
        """
        Connect to the proxy and ask it to listen for the peer.

        @param protocolFactory: Builds the protocol for the peer's
            connection, given the peer's address.
        @return: A L{Deferred<twisted.internet.defer.Deferred>} that fires,
            after the proxy's first reply, with a L{PendingBind}: tell the
            peer its C{address}, then wait for its C{accepted()}.  It fails as
            the CONNECT endpoints' C{connect} does (a
            L{socks_twisted.errors.SOCKSError}, the error of the connection to
            the proxy, L{twisted.internet.error.TimeoutError} for the
            handshake timeout, L{twisted.internet.error.DNSLookupError} with
            C{resolveLocally}).
            Cancelling it before it fires fails it with
            L{twisted.internet.error.ConnectingCancelledError} and stops
            whatever is in progress (the connection to the proxy is
            aborted).
        """
        attempt = self._start(protocolFactory)
        assert isinstance(attempt, BindAttempt)
        return attempt.ready


class SOCKS5BindClient(_SOCKS5Requester, _BindClient):
    """
    BIND through a SOCKS5 proxy (RFC 1928), with no authentication or with a
    username and password (RFC 1929).

    C{host} and C{port} are DST.ADDR and DST.PORT: the peer expected to
    connect.  Proxies use them to decide whether to allow the request and
    which peer to accept (ours accepts a connection from that IP only,
    unless it is C{0.0.0.0} or C{::}); give the peer's address when you
    know it.  Names go out as ATYP 3 unless C{resolveLocally}.
    """

    def __init__(
        self,
        host: str | bytes,
        port: int,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        methods: Methods | None = None,
        credentials: tuple[str | bytes, str | bytes] | None = None,
        resolveLocally: bool = False,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        acceptTimeout: float | None = None,
        reactor: IReactorTime | None = None,
        gssapi: GSSAPIOptions | None = None,
    ) -> None:
        """
        @param host: The expected peer: an IPv4 or IPv6 literal or a name;
            C{"0.0.0.0"} for any.
        @param port: The expected peer's port; 0 for any.
        @param proxyEndpoint: The endpoint that connects to the proxy.
        @param methods: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.
        @param credentials: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.
        @param resolveLocally: Resolve a name here and send an address.
        @param handshakeTimeout: Seconds from the connection to the proxy to
            its first reply; C{None} waits forever.
        @param acceptTimeout: Seconds from the first reply to the second (the
            peer connecting), after which L{PendingBind.accepted} fails with
            L{twisted.internet.error.TimeoutError}; C{None} (the default)
            leaves it to the proxy's own deadline (2 minutes for ours and
            Dante's).
        @param reactor: Provides the clock, and the name resolver for
            C{resolveLocally}; the global reactor if C{None}.
        @param gssapi: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.

        @raise ValueError: A field cannot be sent, or the methods are not
            ones this client implements.
        """
        super().__init__(
            host,
            port,
            proxyEndpoint,
            resolveLocally=resolveLocally,
            handshakeTimeout=handshakeTimeout,
            acceptTimeout=acceptTimeout,
            reactor=reactor,
        )
        self._authenticate(methods, credentials, gssapi)


class SOCKS4BindClient(_SOCKS4Requester, _BindClient):
    """
    BIND through a SOCKS4 proxy: SOCKS4 for an IPv4 literal (C{0.0.0.0} for
    any peer), SOCKS4a for a name (the proxy resolves it), or SOCKS4 with a
    locally resolved IPv4 address when C{resolveLocally} is true.

    The SOCKS4 text asks for DSTIP and DSTPORT of the peer (the "application
    server") and lets the proxy check them; SOCKS4 cannot carry IPv6.
    """

    def __init__(
        self,
        host: str | bytes,
        port: int,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        userID: bytes | str = b"",
        resolveLocally: bool = False,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        acceptTimeout: float | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        """
        @param host: The expected peer: an IPv4 literal or a name.
        @param port: The expected peer's port; 0 for any.
        @param proxyEndpoint: The endpoint that connects to the proxy.
        @param userID: The SOCKS4 USERID field (no NUL, at most 255 bytes).
        @param resolveLocally: Resolve a name here (IPv4 only) and speak
            plain SOCKS4 instead of SOCKS4a.
        @param handshakeTimeout: As for L{SOCKS5BindClient}.
        @param acceptTimeout: As for L{SOCKS5BindClient}.
        @param reactor: As for L{SOCKS5BindClient}.

        @raise ValueError: The host is an IPv6 literal, or a field cannot be
            sent.
        """
        super().__init__(
            host,
            port,
            proxyEndpoint,
            resolveLocally=resolveLocally,
            handshakeTimeout=handshakeTimeout,
            acceptTimeout=acceptTimeout,
            reactor=reactor,
        )
        self._identify(userID)
