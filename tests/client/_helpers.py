"""
Fakes for the client unit tests: a proxy endpoint connected by hand to a
L{StringTransport} and the proxy's side of an exchange through it, the
SOCKS5 method negotiation's bytes, recording application protocols, a
controllable name resolver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IResolutionReceiver,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

#: Where the fake proxy is.
PROXY_ADDRESS = IPv4Address("TCP", "127.0.0.1", 1080)


_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)


def h(text: str) -> bytes:
    """
    Bytes from hex written with spaces, as in the RFC figures.
    """
    return bytes.fromhex(text)


# RFC 1928 section 3: VER 5, NMETHODS, METHODS.
GREETING_NOAUTH = h("05 01 00")
GREETING_NOAUTH_USERPASS = h("05 02 00 02")
SELECT_NOAUTH = h("05 00")
SELECT_USERPASS = h("05 02")
# RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD; status VER 1, STATUS.
AUTH_ALICE = h("01 05") + b"alice" + h("06") + b"secret"
AUTH_OK = h("01 00")

#: Alice's password in L{AUTH_ALICE}.
PASSWORD = "secret"


def valueOf(failure: Failure, cls: type[_E]) -> _E:
    """
    The exception of C{failure}, checked to be a C{cls}.
    """
    value = failure.value
    assert isinstance(value, cls), failure
    return value


def onlyResult(results: list[object], cls: type[_T]) -> _T:
    """
    The one result in C{results}, checked to be a C{cls}.
    """
    [result] = results
    assert isinstance(result, cls), result
    return result


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """
    A L{StringTransport} that also records half-close and TCP options, and
    says it is a TCP transport.
    """

    def __init__(self) -> None:
        super().__init__(peerAddress=PROXY_ADDRESS)
        self.writeClosed = False
        self.noDelay = False
        self.keepAlive = False

    def loseWriteConnection(self) -> None:
        """
        Record a half-close.
        """
        self.writeClosed = True

    def getTcpNoDelay(self) -> bool:
        """
        Report the recorded option.
        """
        return self.noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        """
        Record the option.
        """
        self.noDelay = enabled

    def getTcpKeepAlive(self) -> bool:
        """
        Report the recorded option.
        """
        return self.keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """
        Record the option.
        """
        self.keepAlive = enabled


@implementer(IStreamClientEndpoint)
class FakeProxyEndpoint:
    """
    An endpoint whose connections the test completes or fails by hand.

    @ivar attempts: The factory and L{Deferred} of each C{connect} call.
    @ivar cancelled: How many of those L{Deferred}s were cancelled.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[IProtocolFactory, Deferred[IProtocol]]] = []
        self.cancelled = 0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Record the attempt; it completes when the test says so.
        """

        def cancel(d: Deferred[IProtocol]) -> None:
            self.cancelled += 1
            d.errback(Failure(ConnectingCancelledError(PROXY_ADDRESS)))

        d: Deferred[IProtocol] = Deferred(cancel)
        self.attempts.append((protocolFactory, d))
        return d

    def complete(
        self, transport: StringTransport | None = None, index: int = -1
    ) -> tuple[Protocol, StringTransport]:
        """
        Connect attempt C{index} to C{transport}, as a TCP endpoint does:
        build the protocol, connect it, fire the L{Deferred}.

        @return: The protocol the endpoint's caller gave (the SOCKS
            handshake protocol) and its transport.
        """
        factory, d = self.attempts[index]
        if transport is None:
            transport = TCPStringTransport()
        protocol = factory.buildProtocol(PROXY_ADDRESS)
        assert isinstance(protocol, Protocol), protocol
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport


def overFakeProxy(
    client: Callable[..., _T], host: str, port: int, **kwargs: Any
) -> tuple[_T, FakeProxyEndpoint, MemoryReactorClock]:
    """
    A C{client} for C{host}:C{port} over a fake proxy endpoint and a memory
    reactor.
    """
    proxy = FakeProxyEndpoint()
    reactor = MemoryReactorClock()
    return client(host, port, proxy, reactor=reactor, **kwargs), proxy, reactor


class ProxyExchange:
    """
    The proxy's side of one request through a L{FakeProxyEndpoint}, driven
    by the test.

    @ivar handshake: The client's handshake protocol, once connected.
    """

    def __init__(
        self, proxy: FakeProxyEndpoint, transport: TCPStringTransport | None = None
    ) -> None:
        self.proxy = proxy
        self.transport = transport if transport is not None else TCPStringTransport()
        self.handshake: Any = None

    def connectProxy(self) -> None:
        """
        Complete the connection to the proxy.
        """
        self.handshake, _ = self.proxy.complete(self.transport)

    def sent(self) -> bytes:
        """
        Return and forget what the client wrote to the proxy.
        """
        value: bytes = self.transport.value()
        self.transport.clear()
        return value

    def receive(self, data: bytes) -> None:
        """
        The proxy sends C{data}.
        """
        self.handshake.dataReceived(data)


class RecordingProtocol(Protocol):
    """
    An application protocol that records what happens to it.

    @ivar received: Each C{dataReceived} argument, in order.
    @ivar lost: The reason given to C{connectionLost}, once called.
    @ivar events: The names of the calls, in order.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: Failure | None = None
        self.events: list[str] = []

    def connectionMade(self) -> None:
        """
        Record the call.
        """
        self.events.append("connectionMade")

    def dataReceived(self, data: bytes) -> None:
        """
        Record the bytes.
        """
        self.events.append("dataReceived")
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Record the reason.
        """
        self.events.append("connectionLost")
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseableRecorder(RecordingProtocol):
    """
    A recording protocol that accepts half-close.
    """

    def readConnectionLost(self) -> None:
        """
        Record the call.
        """
        self.events.append("readConnectionLost")

    def writeConnectionLost(self) -> None:
        """
        Record the call.
        """
        self.events.append("writeConnectionLost")


@implementer(IHandshakeListener)
class HandshakeRecorder(RecordingProtocol):
    """
    A recording protocol that listens for TLS handshakes.
    """

    def handshakeCompleted(self) -> None:
        """
        Record the call.
        """
        self.events.append("handshakeCompleted")


class RecordingFactory(Factory):
    """
    Builds one protocol of a given class and keeps it, and the address
    C{buildProtocol} was given.
    """

    noisy = False

    def __init__(self, protocolClass: type[RecordingProtocol] = RecordingProtocol):
        self.protocolClass = protocolClass
        self.built: list[RecordingProtocol] = []
        self.addresses: list[IAddress | None] = []

    def buildProtocol(self, addr: IAddress | None) -> RecordingProtocol:
        """
        Build and keep a protocol.
        """
        self.addresses.append(addr)
        protocol = self.protocolClass()
        protocol.factory = self
        self.built.append(protocol)
        return protocol


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        """
        Not supported, as for Twisted's own resolvers.
        """


@implementer(IHostnameResolver)
class FakeResolver:
    """
    A name resolver the test answers by hand.

    @ivar queries: C{(receiver, name, port, addressTypes)} of each call.
    """

    def __init__(self) -> None:
        self.queries: list[
            tuple[IResolutionReceiver, str, int, Sequence[type[IAddress]] | None]
        ] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """
        Record the query; see L{answer}.
        """
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        self.queries.append((resolutionReceiver, hostName, portNumber, addressTypes))
        return resolution

    def answer(self, *addresses: IAddress, index: int = -1) -> None:
        """
        Complete query C{index} with C{addresses}.
        """
        receiver = self.queries[index][0]
        for address in addresses:
            receiver.addressResolved(address)
        receiver.resolutionComplete()
