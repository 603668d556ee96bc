"""
Fakes for driving a server session without sockets: transports that record
half-closes, and an outbound dialler whose attempts the test completes.
"""

from dataclasses import dataclass, field

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from socks_twisted.auth import portalFor
from socks_twisted.server import SOCKSServerFactory, SOCKSServerProtocol
from socks_twisted.server._outbound import TargetProtocol

CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 50000)
SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 1080)


class HalfCloseTransport(StringTransport):
    """
    A L{StringTransport} that also records C{loseWriteConnection}.
    """

    writeShut = False

    def loseWriteConnection(self) -> None:
        self.writeShut = True


@dataclass
class Attempt:
    """
    One outbound connection attempt the session made.
    """

    host: str
    port: int
    timeout: float
    factory: IProtocolFactory
    deferred: "defer.Deferred[IProtocol]"
    cancelled: bool = False

    def succeed(
        self, bound: tuple[str, int] = ("127.0.0.1", 40000)
    ) -> tuple[TargetProtocol, HalfCloseTransport]:
        """
        Connect: build the target protocol on a fake transport bound to
        C{bound} and fire the attempt.
        """
        protocol = self.factory.buildProtocol(IPv4Address("TCP", self.host, self.port))
        assert isinstance(protocol, TargetProtocol)
        transport = HalfCloseTransport(
            hostAddress=IPv4Address("TCP", *bound),
            peerAddress=IPv4Address("TCP", "127.0.0.1", self.port),
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
    Stands in for the factory's C{endpointFor}: records each attempt.
    """

    attempts: list[Attempt] = field(default_factory=list)

    def __call__(self, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
        return _FakeEndpoint(self, host, port, timeout)


@implementer(IStreamClientEndpoint)
class _FakeEndpoint:
    def __init__(self, dialler: FakeDialler, host: str, port: int, timeout: float):
        self._dialler, self._host, self._port = dialler, host, port
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        attempt: Attempt

        def cancel(d: "defer.Deferred[IProtocol]") -> None:
            attempt.cancelled = True

        attempt = Attempt(
            self._host, self._port, self._timeout, factory, defer.Deferred(cancel)
        )
        self._dialler.attempts.append(attempt)
        return attempt.deferred


def makeFactory(
    *, users: dict[bytes, bytes] | None = None, **settings: object
) -> tuple[SOCKSServerFactory, MemoryReactorClock, FakeDialler]:
    """
    A server factory on a fake reactor and dialler; with C{users}, RFC 1929
    is required against an in-memory checker.
    """
    reactor = MemoryReactorClock()
    dialler = FakeDialler()
    portal = None
    if users is not None:
        portal = portalFor(
            [
                InMemoryUsernamePasswordDatabaseDontUse(
                    **{name.decode(): password for name, password in users.items()}
                )
            ]
        )
    factory = SOCKSServerFactory(
        reactor,
        portal=portal,
        endpointFor=dialler,
        **settings,  # type: ignore[arg-type]
    )
    return factory, reactor, dialler


def connectClient(
    factory: SOCKSServerFactory,
) -> tuple[SOCKSServerProtocol, HalfCloseTransport]:
    """
    Accept one client connection on C{factory}.
    """
    protocol = factory.buildProtocol(CLIENT_ADDRESS)
    assert protocol is not None
    transport = HalfCloseTransport(
        hostAddress=SERVER_ADDRESS, peerAddress=CLIENT_ADDRESS
    )
    protocol.makeConnection(transport)
    return protocol, transport
