"""
Fakes for driving a server session without sockets: transports that record
half-closes, and an outbound dialler whose attempts the test completes.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from socks_twisted.auth import portalFor
from socks_twisted.server import SOCKSServerFactory, SOCKSServerProtocol
from socks_twisted.server._target import TargetProtocol

CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 50000)
SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 1080)


class HalfCloseTransport(StringTransport):
    """
    A L{StringTransport} that also records C{loseWriteConnection}.
    """

    writeShut = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.writeShut = True

    def abortConnection(self) -> None:
        """
        Record the abort, then close as L{StringTransport} does.
        """
        self.aborted = True
        super().abortConnection()

    @property
    def closing(self) -> bool:
        """
        Whether the server began to close: fully, or its write side.
        """
        return bool(self.disconnecting) or self.writeShut


@dataclass
class Attempt:
    """
    One outbound connection attempt the session made.

    @ivar accept: The address filter the dialler was given (which of a
        name's addresses may be dialled), or C{None}: none given, or a
        dialler called the simple C{(host, port, timeout)} way.
    @ivar bindAddress: The source address the dialler was given, if any.
    """

    host: str
    port: int
    timeout: float
    factory: IProtocolFactory
    deferred: "defer.Deferred[IProtocol]"
    cancelled: bool = False
    accept: Callable[[str], bool] | None = None
    bindAddress: str | None = None

    def resolve(self, addresses: list[str]) -> list[str]:
        """
        Do what a filtering resolver does with a name's C{addresses}: ask
        C{accept} about each, in order, and return those it allows (all of
        them when there is no filter).
        """
        accept = self.accept
        if accept is None:
            return list(addresses)
        return [address for address in addresses if accept(address)]

    def succeed(
        self,
        bound: tuple[str, int] = ("127.0.0.1", 40000),
        peer: tuple[str, int] | None = None,
    ) -> tuple[TargetProtocol, HalfCloseTransport]:
        """
        Connect: build the target protocol on a fake transport bound to
        C{bound}, connected to C{peer} (by default 127.0.0.1 on the
        attempt's port), and fire the attempt.
        """
        protocol = self.factory.buildProtocol(IPv4Address("TCP", self.host, self.port))
        assert isinstance(protocol, TargetProtocol)
        peerHost, peerPort = peer if peer is not None else ("127.0.0.1", self.port)
        kind = IPv6Address if ":" in peerHost else IPv4Address
        transport = HalfCloseTransport(
            hostAddress=IPv4Address("TCP", *bound),
            peerAddress=kind("TCP", peerHost, peerPort),
        )
        protocol.makeConnection(transport)
        self.deferred.callback(protocol)
        return protocol, transport

    def fail(self, exception: BaseException) -> None:
        """
        Fail the attempt with C{exception}.
        """
        self.deferred.errback(Failure(exception))


@dataclass
class FakeDialler:
    """
    Stands in for the factory's C{dialler} (or its simple C{endpointFor}):
    records each attempt, with the address filter and source address it
    was given.
    """

    attempts: list[Attempt] = field(default_factory=list)

    def __call__(
        self,
        host: str,
        port: int,
        timeout: float,
        *,
        accept: Callable[[str], bool] | None = None,
        bindAddress: str | None = None,
    ) -> IStreamClientEndpoint:
        return _FakeEndpoint(self, host, port, timeout, accept, bindAddress)


@implementer(IStreamClientEndpoint)
class _FakeEndpoint:
    def __init__(
        self,
        dialler: FakeDialler,
        host: str,
        port: int,
        timeout: float,
        accept: Callable[[str], bool] | None = None,
        bindAddress: str | None = None,
    ):
        self._dialler, self._host, self._port = dialler, host, port
        self._timeout = timeout
        self._accept, self._bindAddress = accept, bindAddress

    def connect(self, factory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        attempt: Attempt

        def cancel(d: "defer.Deferred[IProtocol]") -> None:
            attempt.cancelled = True

        attempt = Attempt(
            self._host,
            self._port,
            self._timeout,
            factory,
            defer.Deferred(cancel),
            accept=self._accept,
            bindAddress=self._bindAddress,
        )
        self._dialler.attempts.append(attempt)
        return attempt.deferred


@implementer(IListeningPort)
class FakePort:
    """
    A listening port that records whether it was stopped.
    """

    def __init__(self, address: IPv4Address | IPv6Address) -> None:
        self.address = address
        self.stopped = False

    def startListening(self) -> None:
        pass

    def stopListening(self) -> "defer.Deferred[None]":
        self.stopped = True
        return defer.succeed(None)

    def getHost(self) -> IPv4Address | IPv6Address:
        return self.address


@implementer(IStreamServerEndpoint)
class _FakeServerEndpoint:
    def __init__(self, listeners: "FakeListeners", interface: str) -> None:
        self._listeners, self._interface = listeners, interface

    def listen(self, factory: IProtocolFactory) -> "defer.Deferred[IListeningPort]":
        kind = IPv6Address if ":" in self._interface else IPv4Address
        port = FakePort(kind("TCP", self._interface, 41000))
        self._listeners.tcp.append((port, factory))
        return defer.succeed(port)


class FakeUDPTransport(FakePort):
    """
    The transport of a UDP association: records what it sends.
    """

    def __init__(self, address: IPv4Address | IPv6Address) -> None:
        super().__init__(address)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@dataclass
class FakeListeners:
    """
    Stands in for the factory's C{listenFor}, C{listenUDP} and C{resolve}.

    @ivar names: What each name resolves to; a name not here fails.
    """

    tcp: list[tuple[FakePort, IProtocolFactory]] = field(default_factory=list)
    udp: list[tuple[FakeUDPTransport, DatagramProtocol]] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)
    resolved: list[tuple[str, int]] = field(default_factory=list)

    def listenFor(self, interface: str) -> IStreamServerEndpoint:
        return _FakeServerEndpoint(self, interface)

    def listenUDP(self, interface: str, protocol: DatagramProtocol) -> IListeningPort:
        kind = IPv6Address if ":" in interface else IPv4Address
        transport = FakeUDPTransport(kind("UDP", interface, 42000))
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        self.udp.append((transport, protocol))
        return transport

    def resolve(self, name: str, family: int) -> "defer.Deferred[list[str]]":
        self.resolved.append((name, family))
        if name in self.names:
            return defer.succeed(self.names[name])
        return defer.fail(error.DNSLookupError(name))

    def openPorts(self) -> int:
        """
        How many listeners are still open.
        """
        return sum(not p.stopped for p, _ in self.tcp) + sum(
            not t.stopped for t, _ in self.udp
        )


def makeFactory(
    *,
    users: dict[bytes, bytes] | None = None,
    simpleDialler: bool = False,
    **settings: Any,
) -> tuple[SOCKSServerFactory, MemoryReactorClock, FakeDialler]:
    """
    A server factory on a fake reactor and dialler; with C{users}, RFC 1929
    is required against an in-memory checker.

    @param simpleDialler: Give the dialler as the simple C{endpointFor}
        (called with C{(host, port, timeout)} only: no address filter, no
        source address) instead of as the full C{dialler}.
    """
    reactor = MemoryReactorClock()
    dialler = FakeDialler()
    listeners = settings.pop("listeners", None)
    if isinstance(listeners, FakeListeners):
        settings.update(
            listenFor=listeners.listenFor,
            listenUDP=listeners.listenUDP,
            resolve=listeners.resolve,
        )
    portal = None
    if users is not None:
        portal = portalFor(
            [
                InMemoryUsernamePasswordDatabaseDontUse(
                    **{name.decode(): password for name, password in users.items()}
                )
            ]
        )
    if simpleDialler:
        settings.update(endpointFor=dialler)
    else:
        settings.update(dialler=dialler)
    factory = SOCKSServerFactory(reactor, portal=portal, **settings)
    return factory, reactor, dialler


def connectClient(
    factory: SOCKSServerFactory,
    client: IPv4Address | IPv6Address = CLIENT_ADDRESS,
    server: IPv4Address | IPv6Address = SERVER_ADDRESS,
) -> tuple[SOCKSServerProtocol, HalfCloseTransport]:
    """
    Accept one client connection on C{factory}.
    """
    protocol = factory.buildProtocol(client)
    assert protocol is not None
    transport = HalfCloseTransport(hostAddress=server, peerAddress=client)
    protocol.makeConnection(transport)
    return protocol, transport
