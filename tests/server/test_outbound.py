"""
The default dialler on real loopback sockets: a name is dialled only
through the addresses the filter allows, from the source address asked for.
"""

from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import CannotListenError, DNSLookupError, TimeoutError
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IReactorTCP,
    IResolutionReceiver,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from socks_twisted.server import SOCKSServerFactory
from socks_twisted.server._outbound import (
    ConnectReactor,
    _ResolvingThrough,
    endpointFor,
    timesItself,
)

from ._fakes import connectClient
from .test_session import CONNECT_IPV4, GREETING_NO_AUTH


@implementer(IHostResolution)
class _Resolution:
    name = "fake"

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class FixedResolver:
    """
    Resolves every name to a fixed list of addresses, and counts look-ups.
    """

    def __init__(self, addresses: Sequence[str]) -> None:
        self.addresses = addresses
        self.lookups = 0

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.lookups += 1
        resolution = _Resolution()
        resolutionReceiver.resolutionBegan(resolution)
        for address in self.addresses:
            resolutionReceiver.addressResolved(IPv4Address("TCP", address, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


class _Recorder(Protocol):
    def __init__(self, accepted: list[tuple[str, str]]) -> None:
        self.accepted = accepted

    def connectionMade(self) -> None:
        assert self.transport is not None
        host, peer = self.transport.getHost(), self.transport.getPeer()
        assert isinstance(host, IPv4Address) and isinstance(peer, IPv4Address)
        self.accepted.append((host.host, peer.host))


class _Recording(ServerFactory):
    def __init__(self) -> None:
        self.accepted: list[tuple[str, str]] = []

    def buildProtocol(self, addr: IAddress | None) -> _Recorder:
        return _Recorder(self.accepted)


class FilteredDialTests(TestCase):
    """
    L{endpointFor} with C{accept} and C{bindAddress}.
    """

    def listen(
        self, interface: str, port: int = 0
    ) -> tuple[int, list[tuple[str, str]]]:
        factory = _Recording()
        listening = cast(IReactorTCP, reactor).listenTCP(
            port, factory, interface=interface
        )
        self.addCleanup(listening.stopListening)
        return cast(IPv4Address, listening.getHost()).port, factory.accepted

    def listenOnBoth(
        self,
    ) -> tuple[int, list[tuple[str, str]], list[tuple[str, str]]]:
        """
        Listen on 127.0.0.2 and 127.0.0.1 with one port number: another
        test may hold the number picked for the first on the second, so
        try a few.
        """
        for _ in range(20):
            port, onSecond = self.listen("127.0.0.2")
            try:
                _, onFirst = self.listen("127.0.0.1", port)
            except CannotListenError:
                continue
            return port, onSecond, onFirst
        raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")

    def viaResolver(self, resolver: FixedResolver) -> ConnectReactor:
        return _ResolvingThrough(reactor, resolver)  # type: ignore[return-value]

    async def connect(self, *args: Any, **kwargs: Any) -> Protocol:
        endpoint = endpointFor(*args, **kwargs)
        protocol = cast(Protocol, await endpoint.connect(Factory.forProtocol(Protocol)))
        assert protocol.transport is not None
        self.addCleanup(protocol.transport.loseConnection)
        return protocol

    async def test_onlyAllowedAddressDialled(self) -> None:
        """
        A name resolving to a denied address and an allowed one: only the
        allowed one is dialled, from one look-up.
        """
        port, deniedAccepted, allowedAccepted = self.listenOnBoth()
        resolver = FixedResolver(["127.0.0.2", "127.0.0.1"])
        checked: list[str] = []

        def accept(address: str) -> bool:
            checked.append(address)
            return address != "127.0.0.2"

        protocol = await self.connect(
            self.viaResolver(resolver), "target.example", port, 5.0, accept=accept
        )
        assert protocol.transport is not None
        self.assertEqual(
            cast(IPv4Address, protocol.transport.getPeer()).host, "127.0.0.1"
        )
        self.assertEqual(checked, ["127.0.0.2", "127.0.0.1"])
        self.assertEqual(resolver.lookups, 1)
        self.assertEqual(deniedAccepted, [])
        self.assertEqual(len(allowedAccepted), 1)

    async def test_everyAddressDenied(self) -> None:
        """
        When the filter denies every address, nothing is dialled and the
        attempt fails as a name with no address does.
        """
        port, accepted = self.listen("127.0.0.1")
        endpoint = endpointFor(
            self.viaResolver(FixedResolver(["127.0.0.1"])),
            "target.example",
            port,
            5.0,
            accept=lambda address: False,
        )
        attempt: Deferred[IProtocol] = endpoint.connect(Factory.forProtocol(Protocol))
        with self.assertRaises(DNSLookupError):
            await attempt
        self.assertEqual(accepted, [])

    async def test_bindAddress(self) -> None:
        """
        The connection comes from the source address asked for, for an IP
        literal and for a name.
        """
        port, accepted = self.listen("127.0.0.1")
        await self.connect(reactor, "127.0.0.1", port, 5.0, bindAddress="127.0.0.3")
        await self.connect(
            self.viaResolver(FixedResolver(["127.0.0.1"])),
            "target.example",
            port,
            5.0,
            bindAddress="127.0.0.4",
        )
        self.assertEqual([peer for _, peer in accepted], ["127.0.0.3", "127.0.0.4"])

    def test_ipLiteralDialledDirectly(self) -> None:
        """
        An IP literal of either family is dialled with C{connectTCP} itself,
        with the connect timeout and the source address asked for, and no
        resolver is asked, even when a filter is given.
        """
        for host, source in (("127.0.0.1", "127.0.0.5"), ("::1", "::1")):
            memory = MemoryReactor()
            resolver = FixedResolver([])
            memory.nameResolver = resolver
            endpoint = endpointFor(
                cast(ConnectReactor, memory),
                host,
                1080,
                7.5,
                accept=lambda address: False,
                bindAddress=source,
            )
            endpoint.connect(Factory.forProtocol(Protocol))
            [(dialled, port, _, timeout, bindAddress)] = memory.tcpClients
            self.assertEqual(
                (dialled, port, timeout, bindAddress), (host, 1080, 7.5, (source, 0))
            )
            self.assertEqual(resolver.lookups, 0)

    def test_resolvingThroughKeepsTheRest(self) -> None:
        """
        The per-connection view of the reactor answers everything but the
        resolver from the real one, and cannot have its resolver replaced.
        """
        resolver = FixedResolver([])
        view = _ResolvingThrough(reactor, resolver)
        self.assertIs(view.nameResolver, resolver)
        self.assertEqual(view.connectTCP, cast(IReactorTCP, reactor).connectTCP)
        self.assertRaises(NotImplementedError, view.installNameResolver, resolver)


class TimedByTheConnectionTests(SynchronousTestCase):
    """
    An IP literal's connection attempt, from the default dialler, is timed
    by the attempt itself: CONNECT sets no second timer, and the attempt's
    timeout is still the client's answer.  Any other endpoint keeps the
    session's own timer.
    """

    def test_onlyIPLiteralsTimeThemselves(self) -> None:
        """
        L{timesItself} holds for the endpoints L{endpointFor} makes for IP
        literals, not for a name's, nor for any other endpoint.
        """
        memory = MemoryReactorClock()
        dialler = cast(ConnectReactor, memory)
        self.assertTrue(timesItself(endpointFor(dialler, "127.0.0.1", 1, 5.0)))
        self.assertTrue(timesItself(endpointFor(dialler, "::1", 1, 5.0)))
        self.assertFalse(timesItself(endpointFor(dialler, "example.com", 1, 5.0)))
        self.assertFalse(
            timesItself(TCP4ClientEndpoint(memory, "127.0.0.1", 1, timeout=5.0))
        )

    def test_timeoutAnsweredOnce(self) -> None:
        """
        A CONNECT to an IPv4 literal through the default dialler dials with
        the connect timeout and adds no timer of its own; when the attempt
        times out, the client gets 0x06 (TTL expired).
        """
        memory = MemoryReactorClock()
        factory = SOCKSServerFactory(memory, connectTimeout=5.0, handshakeTimeout=60)
        protocol, transport = connectClient(factory)
        timers = len(memory.getDelayedCalls())
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        [(host, port, targetFactory, timeout, _)] = memory.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 80, 5.0))
        # The session's handshake deadline is cancelled; no timer was added.
        self.assertEqual(len(memory.getDelayedCalls()), timers - 1)
        connector = memory.connectors[0]
        targetFactory.clientConnectionFailed(connector, Failure(TimeoutError()))
        self.assertEqual(
            transport.value()[-10:], bytes.fromhex("05 06 00 01") + bytes(6)
        )
