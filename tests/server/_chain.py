"""
Loopback helpers for the upstream chaining tests: our server in-process,
echo targets (TCP and UDP), a client through the front server, and the
session log events.
"""

from typing import Any, cast

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from socks_twisted._addresses import hostAndPort
from socks_twisted.auth import portalFor
from socks_twisted.client import SOCKSProxy, SOCKSTunnelTransport
from socks_twisted.client._endpoints import SOCKSReactor
from socks_twisted.server import SOCKSServerFactory

#: Seconds any one step may take.
STEP = 10.0


class Echo(Protocol):
    """
    Echoes every byte.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class EchoUDP(DatagramProtocol):
    """
    Echoes every datagram to where it came from.
    """

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.write(b"echo:" + datagram, addr)


class Collect(Protocol):
    """
    Collects what it receives; C{closed} fires when the connection ends.
    """

    def __init__(self) -> None:
        self.received = b""
        self.waiting: list[tuple[int, defer.Deferred[bytes]]] = []
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for entry in list(self.waiting):
            if len(self.received) >= entry[0]:
                self.waiting.remove(entry)
                entry[1].callback(self.received)

    @property
    def tunnel(self) -> SOCKSTunnelTransport:
        """
        The transport, connected through a proxy.
        """
        assert isinstance(self.transport, SOCKSTunnelTransport)
        return self.transport

    def receive(self, count: int) -> "defer.Deferred[bytes]":
        """
        Fires once C{count} bytes in all have come.
        """
        d: defer.Deferred[bytes] = defer.Deferred()
        if len(self.received) >= count:
            d.callback(self.received)
        else:
            self.waiting.append((count, d))
        d.addTimeout(STEP, cast(Any, reactor))
        return d

    def connectionLost(self, reason: object = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)


class CollectUDP(DatagramProtocol):
    """
    Collects datagrams with their sources.
    """

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._waiting: defer.Deferred[tuple[bytes, tuple[str, int]]] | None = None

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.received.append((datagram, addr))
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(self.received.pop(0))

    def next(self) -> "defer.Deferred[tuple[bytes, tuple[str, int]]]":
        """
        The next datagram.
        """
        d: defer.Deferred[tuple[bytes, tuple[str, int]]] = defer.Deferred()
        if self.received:
            d.callback(self.received.pop(0))
        else:
            self._waiting = d
        d.addTimeout(STEP, cast(Any, reactor))
        return d


@implementer(ILogObserver)
class SessionEvents:
    """
    Collects the session-end events of every server in the process.
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if str(event.get("log_format", "")).startswith("SOCKS session "):
            self.events.append(event)


class ChainTestCase(TestCase):
    """
    Starts servers and targets on loopback; everything stops at cleanup.
    """

    def setUp(self) -> None:
        self.log = SessionEvents()
        globalLogPublisher.addObserver(self.log)
        self.addCleanup(globalLogPublisher.removeObserver, self.log)

    async def listen(self, factory: Factory) -> int:
        """
        Listen with C{factory} on an ephemeral loopback port.
        """
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port: IListeningPort = await endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        return hostAndPort(port.getHost())[1]

    async def startServer(
        self, users: dict[bytes, bytes] | None = None, **settings: Any
    ) -> tuple[SOCKSServerFactory, int]:
        """
        Our server, requiring C{users} (username to password) if given.
        """
        if users is not None:
            checker = InMemoryUsernamePasswordDatabaseDontUse()
            for user, password in users.items():
                checker.addUser(user, password)
            settings["portal"] = portalFor([checker])
        factory = SOCKSServerFactory(reactor, **settings)
        port = await self.listen(factory)
        factory.addListeningAddress(cast(Any, _address(port)))
        self.addCleanup(_closeSessions, factory)
        return factory, port

    async def startEcho(self) -> int:
        """
        A TCP echo target.
        """
        return await self.listen(Factory.forProtocol(Echo))

    def startEchoUDP(self) -> int:
        """
        A UDP echo target.
        """
        port = cast(IReactorUDP, reactor).listenUDP(0, EchoUDP(), "127.0.0.1", 65535)
        self.addCleanup(port.stopListening)
        return hostAndPort(port.getHost())[1]

    def proxy(self, url: str) -> SOCKSProxy:
        """
        A client of the server C{url} names.
        """
        return SOCKSProxy.fromURL(
            cast(SOCKSReactor, reactor), url, handshakeTimeout=STEP
        )

    async def connect(self, proxy: SOCKSProxy, host: str, port: int) -> Collect:
        """
        CONNECT through C{proxy}; the connection closes at cleanup.
        """
        connecting = proxy.endpoint(host, port).connect(Factory.forProtocol(Collect))
        connecting.addTimeout(STEP, cast(Any, reactor))
        protocol = await connecting
        assert isinstance(protocol, Collect)
        self.addCleanup(_close, protocol)
        return protocol

    async def sessionEvent(self, count: int = 1) -> LogEvent:
        """
        The C{count}th session-end event, once logged.
        """
        for _ in range(int(STEP / 0.05)):
            if len(self.log.events) >= count:
                return self.log.events[count - 1]
            await _sleep(0.05)
        raise AssertionError(f"only {len(self.log.events)} session events")


def _address(port: int) -> object:
    from twisted.internet.address import IPv4Address

    return IPv4Address("TCP", "127.0.0.1", port)


async def _sleep(seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d


async def _close(protocol: Collect) -> None:
    if protocol.transport is not None and not protocol.closed.called:
        protocol.transport.loseConnection()
        protocol.closed.addTimeout(STEP, cast(Any, reactor))
        await protocol.closed


async def _closeSessions(factory: SOCKSServerFactory) -> None:
    for _ in range(int(STEP / 0.05)):
        if not factory.sessions:
            return
        for session in list(factory.sessions):
            if session.transport is not None:
                session.transport.loseConnection()
        await _sleep(0.05)
