# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
The SOCKS5 UDP ASSOCIATE client (L{SOCKS5UDPClient},
L{SOCKS5UDPAssociation}).

Unit tests drive a scripted proxy on L{StringTransport} and a fake UDP
port: the request (hex from RFC 1928 section 4), the relay address and the
unspecified-address convention, the UDP request header of every datagram
sent (hex from section 7), the datagrams dropped (wrong source, fragments,
malformed headers), the transport's connected mode, closing, the loss of the
control connection, cancellation and timeouts.

Loopback tests run against our own server and against Dante, with a UDP
echo server: round trips by IP and by name, several datagrams, and a close
that is checked to end the association on the server.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from socks_twisted import errors
from socks_twisted._gssstream import DatagramWrapper
from socks_twisted._wire import ProtectionLevel, encapsulatedMessage
from socks_twisted.auth import portalFor
from socks_twisted.client import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    SOCKS5UDPAssociation,
    SOCKS5UDPClient,
    SOCKSTunnelTransport,
)
from tests.interop._thirdparty import ThirdPartyServer, startDante

from ..test_gssstream import _Context
from ._helpers import (
    AUTH_ALICE,
    AUTH_OK,
    GREETING_NOAUTH,
    GREETING_NOAUTH_USERPASS,
    PASSWORD,
    PROXY_ADDRESS,
    SELECT_NOAUTH,
    SELECT_USERPASS,
    FakeProxyEndpoint,
    ProxyExchange,
    TCPStringTransport,
    h,
    onlyResult,
)
from ._loopback import (
    LOOPBACK,
    asyncTest,
    reactor,
    startOurServer,
    waitUntil,
    withTimeout,
)

# RFC 1928 section 4, CMD 3 (UDP ASSOCIATE), DST.ADDR 0.0.0.0, DST.PORT 0.
ASSOCIATE = h("05 03 00 01 00 00 00 00 00 00")
# Section 6: the relay at 127.0.0.1:5000; unspecified; IPv6; a name; port 0.
RELAY_REPLY = h("05 00 00 01 7f 00 00 01 13 88")
RELAY_REPLY_ANY = h("05 00 00 01 00 00 00 00 13 88")
RELAY_REPLY_IPV6 = h("05 00 00 04 " + "00 " * 15 + "01 13 88")
RELAY_REPLY_NAME = h("05 00 00 03 0a") + b"proxy.test" + h("13 88")
RELAY_REPLY_PORT0 = h("05 00 00 01 7f 00 00 01 00 00")
NOT_SUPPORTED = h("05 07 00 01 00 00 00 00 00 00")
RELAY = ("127.0.0.1", 5000)
# Section 7: RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA.
HEADER_IPV4 = h("00 00 00 01 c0 00 02 01 00 35")  # 192.0.2.1:53
HEADER_IPV6 = h("00 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 00 35")
HEADER_NAME = h("00 00 00 03 0b") + b"example.com" + h("00 35")
HEADER_IDNA = h("00 00 00 03 15") + b"xn--bcher-kva.example" + h("00 35")
HEADER_FRAGMENT = h("00 00 01 01 c0 00 02 01 00 35")


@implementer(IListeningPort, IUDPTransport)
class FakeUDPPort:
    """
    A UDP port that records what is written and lets the test deliver
    datagrams.

    @ivar stopping: Fired by L{stopListening} at once unless the test set
        C{holdStop}; then the test fires it.
    """

    def __init__(self, protocol: DatagramProtocol, interface: str, size: int) -> None:
        self.protocol = protocol
        self.interface = interface
        self.maxPacketSize = size
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.stopped = False
        self.holdStop = False
        self.stopping: Deferred[None] = Deferred()
        protocol.makeConnection(self)

    def write(self, packet: bytes, addr: tuple[str, int] | None = None) -> None:
        """
        Record a datagram.
        """
        assert addr is not None
        self.written.append((packet, addr))

    def connect(self, host: str, port: int) -> None:
        """
        Not used.
        """
        raise NotImplementedError()

    def getHost(self) -> IPv4Address:
        """
        A fixed local address.
        """
        return IPv4Address("UDP", self.interface or "0.0.0.0", 40000)

    def startListening(self) -> None:
        """
        Not used.
        """

    def stopListening(self) -> Deferred[None]:
        """
        Record the stop.
        """
        self.stopped = True
        self.protocol.doStop()
        if not self.holdStop:
            self.stopping.callback(None)
        return self.stopping

    def setBroadcastAllowed(self, enabled: bool) -> None:
        """
        Not used.
        """

    def getBroadcastAllowed(self) -> bool:
        """
        Not used.
        """
        return False

    def deliver(self, datagram: bytes, source: tuple[str, int] = RELAY) -> None:
        """
        A datagram arrives from C{source}.
        """
        self.protocol.datagramReceived(datagram, source)


@implementer(IReactorUDP)
class UDPMemoryReactor(MemoryReactorClock):
    """
    A memory reactor with a fake C{listenUDP}.

    @ivar udpPorts: The ports opened.
    @ivar listenError: Raised by C{listenUDP} when set.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[FakeUDPPort] = []
        self.listenError: Exception | None = None

    def listenUDP(
        self,
        port: int,
        protocol: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> FakeUDPPort:
        """
        Open a L{FakeUDPPort}.
        """
        if self.listenError is not None:
            raise self.listenError
        udpPort = FakeUDPPort(protocol, interface, maxPacketSize)
        self.udpPorts.append(udpPort)
        return udpPort


class RecordingDatagramProtocol(DatagramProtocol):
    """
    Records what happens to it.
    """

    noisy = False

    def __init__(self) -> None:
        self.events: list[str] = []
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def startProtocol(self) -> None:
        """
        Record the call.
        """
        self.events.append("startProtocol")

    def stopProtocol(self) -> None:
        """
        Record the call.
        """
        self.events.append("stopProtocol")

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """
        Record the datagram.
        """
        self.events.append("datagramReceived")
        self.received.append((datagram, addr))


class UDPExchange(ProxyExchange):
    """
    One C{associate()} through a fake proxy, driven by the test.
    """

    def __init__(
        self,
        protocol: DatagramProtocol | None = None,
        transport: TCPStringTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(FakeProxyEndpoint(), transport)
        self.reactor = UDPMemoryReactor()
        self.client = SOCKS5UDPClient(self.proxy, reactor=self.reactor, **kwargs)
        self.protocol = (
            protocol if protocol is not None else RecordingDatagramProtocol()
        )
        self.results: list[object] = []
        self.deferred = self.client.associate(self.protocol)
        self.deferred.addBoth(self._record)

    def _record(self, result: object) -> None:
        self.results.append(result)

    def association(self) -> SOCKS5UDPAssociation:
        """
        The association C{associate()} fired with.
        """
        return onlyResult(self.results, SOCKS5UDPAssociation)

    def failure(self) -> Failure:
        """
        How C{associate()} failed.
        """
        return onlyResult(self.results, Failure)

    def port(self) -> FakeUDPPort:
        """
        The one UDP port opened.
        """
        [port] = self.reactor.udpPorts
        return port


def associated(reply: bytes = RELAY_REPLY, **kwargs: Any) -> UDPExchange:
    """
    An exchange whose proxy granted the association.
    """
    exchange = UDPExchange(**kwargs)
    exchange.connectProxy()
    exchange.receive(SELECT_NOAUTH + reply)
    return exchange


class AssociateTests(SynchronousTestCase):
    """
    The request, the reply, and the local UDP socket.
    """

    def test_request(self) -> None:
        """
        The request is CMD 3 with DST 0.0.0.0:0; once the proxy replies the
        UDP socket opens (on the control connection's local address, for
        whole datagrams), the protocol starts, then C{associate()} fires
        with the protocol's transport.
        """
        order: list[str] = []
        exchange = UDPExchange()
        protocol = exchange.protocol
        assert isinstance(protocol, RecordingDatagramProtocol)
        exchange.deferred.addCallback(lambda a: order.extend(protocol.events))
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), GREETING_NOAUTH)
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(exchange.sent(), ASSOCIATE)
        self.assertEqual(exchange.reactor.udpPorts, [])
        exchange.receive(RELAY_REPLY)
        association = exchange.association()
        self.assertIs(protocol.transport, association)
        self.assertEqual(order, ["startProtocol"])
        port = exchange.port()
        self.assertEqual(port.interface, "10.0.0.1")
        self.assertEqual(port.maxPacketSize, 65535)
        self.assertEqual(association.relayAddress, IPv4Address("UDP", *RELAY))
        self.assertEqual(
            association.proxyBoundAddress, IPv4Address("TCP", "127.0.0.1", 5000)
        )
        self.assertEqual(association.proxyAddress, PROXY_ADDRESS)
        self.assertEqual(association.getHost(), IPv4Address("UDP", "10.0.0.1", 40000))
        self.assertTrue(verifyObject(IUDPTransport, association))
        self.assertFalse(exchange.transport.disconnecting)

    def test_usernamePassword(self) -> None:
        """
        The same authentication options as the CONNECT endpoint.
        """
        exchange = UDPExchange(credentials=("alice", PASSWORD))
        exchange.connectProxy()
        exchange.receive(SELECT_USERPASS + AUTH_OK + RELAY_REPLY)
        self.assertEqual(
            exchange.sent(), GREETING_NOAUTH_USERPASS + AUTH_ALICE + ASSOCIATE
        )
        exchange.association()

    def test_byteByByte(self) -> None:
        """
        Replies split into single bytes give the same association; bytes
        the proxy sends on the control connection afterwards are ignored.
        """
        exchange = UDPExchange()
        exchange.connectProxy()
        for byte in SELECT_NOAUTH + RELAY_REPLY + b"junk":
            exchange.receive(bytes([byte]))
        association = exchange.association()
        self.assertEqual(association.relayAddress, IPv4Address("UDP", *RELAY))
        self.assertFalse(exchange.transport.disconnecting)

    def test_unspecifiedRelay(self) -> None:
        """
        BND.ADDR 0.0.0.0 means the proxy's own address, with BND.PORT.
        """
        association = associated(RELAY_REPLY_ANY).association()
        self.assertEqual(
            association.relayAddress, IPv4Address("UDP", "127.0.0.1", 5000)
        )
        self.assertEqual(
            association.proxyBoundAddress, IPv4Address("TCP", "0.0.0.0", 5000)
        )

    def test_ipv6Relay(self) -> None:
        """
        An IPv6 relay gets a socket on every IPv6 interface when the control
        connection is IPv4.
        """
        exchange = associated(RELAY_REPLY_IPV6)
        self.assertEqual(
            exchange.association().relayAddress, IPv6Address("UDP", "::1", 5000)
        )
        self.assertEqual(exchange.port().interface, "::")

    def test_interface(self) -> None:
        """
        C{interface} chooses where the UDP socket is opened.
        """
        exchange = associated(interface="127.0.0.5")
        self.assertEqual(exchange.port().interface, "127.0.0.5")

    def test_unusableRelay(self) -> None:
        """
        A relay named by a name, or with port 0, fails C{associate()} and
        aborts the control connection; no UDP socket stays open.
        """
        for reply, cls in [
            (RELAY_REPLY_NAME, errors.SOCKSError),
            (RELAY_REPLY_PORT0, errors.SOCKSProtocolError),
        ]:
            exchange = associated(reply)
            exchange.failure().trap(cls)
            self.assertTrue(exchange.transport.disconnected)
            self.assertEqual(exchange.reactor.udpPorts, [])
            self.assertEqual(exchange.protocol.transport, None)

    def test_refused(self) -> None:
        """
        A failure reply fails C{associate()} with its error.
        """
        exchange = associated(NOT_SUPPORTED)
        exchange.failure().trap(errors.CommandNotSupportedError)
        self.assertEqual(exchange.reactor.udpPorts, [])
        self.assertTrue(exchange.transport.disconnecting)

    def test_cannotListen(self) -> None:
        """
        When the UDP socket cannot be opened, C{associate()} fails with that
        error and the control connection is aborted.
        """
        exchange = UDPExchange()
        exchange.reactor.listenError = error.CannotListenError("", 0, OSError())
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + RELAY_REPLY)
        exchange.failure().trap(error.CannotListenError)
        self.assertTrue(exchange.transport.disconnected)
        protocol = exchange.protocol
        assert isinstance(protocol, RecordingDatagramProtocol)
        self.assertEqual(protocol.events, [])

    def test_startProtocolRaises(self) -> None:
        """
        If the protocol's C{startProtocol} raises, C{associate()} fails with
        that exception, the UDP socket is closed and the control connection
        aborted; the protocol is left unconnected.
        """

        class Broken(DatagramProtocol):
            def startProtocol(self) -> None:
                raise ZeroDivisionError("startProtocol failed")

        exchange = UDPExchange(Broken())
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + RELAY_REPLY)
        exchange.failure().trap(ZeroDivisionError)
        self.assertTrue(exchange.port().stopped)
        self.assertTrue(exchange.transport.disconnected)
        self.assertIsNone(exchange.protocol.transport)
        exchange.handshake.connectionLost(Failure(error.ConnectionAborted()))

    def test_protocolAlreadyConnected(self) -> None:
        """
        A protocol that already has a transport is refused.
        """
        protocol = RecordingDatagramProtocol()
        protocol.transport = cast(IUDPTransport, object())
        exchange = UDPExchange(protocol)
        exchange.failure().trap(ValueError)
        self.assertEqual(exchange.proxy.attempts, [])

    def test_refusedBeforeSending(self) -> None:
        """
        A reactor that cannot listen on UDP, and the CONNECT endpoints'
        method and credential mistakes, are refused when the client is made.
        """
        proxy = FakeProxyEndpoint()
        self.assertRaises(
            ValueError, SOCKS5UDPClient, proxy, reactor=MemoryReactorClock()
        )
        self.assertRaises(ValueError, SOCKS5UDPClient, proxy, methods=[2])
        self.assertRaises(
            ValueError, SOCKS5UDPClient, proxy, credentials=("", PASSWORD)
        )
        self.assertRaises(ValueError, SOCKS5UDPClient, proxy, handshakeTimeout=0)


class DatagramTests(SynchronousTestCase):
    """
    The UDP request header on the way out, and on the way in.
    """

    def setUp(self) -> None:
        self.exchange = associated()
        self.association = self.exchange.association()
        self.port = self.exchange.port()
        protocol = self.exchange.protocol
        assert isinstance(protocol, RecordingDatagramProtocol)
        self.protocol = protocol

    def test_write(self) -> None:
        """
        Each datagram goes to the relay with the header naming its
        destination: ATYP 1, 4, or 3 for a name (IDNA-encoded).
        """
        self.association.write(b"one", ("192.0.2.1", 53))
        self.association.write(b"two", ("2001:db8::1", 53))
        self.association.write(b"three", ("example.com", 53))
        self.association.write(b"four", ("bücher.example", 53))
        self.association.write(b"", ("192.0.2.1", 53))
        self.assertEqual(
            self.port.written,
            [
                (HEADER_IPV4 + b"one", RELAY),
                (HEADER_IPV6 + b"two", RELAY),
                (HEADER_NAME + b"three", RELAY),
                (HEADER_IDNA + b"four", RELAY),
                (HEADER_IPV4, RELAY),
            ],
        )
        self.assertEqual(self.association.datagramsSent, 5)

    def test_writeRefused(self) -> None:
        """
        A destination that cannot be encoded, or no destination, is a
        L{ValueError}; nothing is sent.
        """
        for addr in [("x" * 256, 53), ("192.0.2.1", 65536), ("", 53)]:
            self.assertRaises(ValueError, self.association.write, b"data", addr)
        self.assertRaises(ValueError, self.association.write, b"data")
        self.assertEqual(self.port.written, [])

    def test_receive(self) -> None:
        """
        A datagram from the relay reaches the protocol without its header,
        with the remote the header names (an address or a name).
        """
        self.port.deliver(HEADER_IPV4 + b"answer")
        self.port.deliver(HEADER_NAME + b"named")
        self.port.deliver(HEADER_IPV6)
        self.assertEqual(
            self.protocol.received,
            [
                (b"answer", ("192.0.2.1", 53)),
                (b"named", ("example.com", 53)),
                (b"", ("2001:db8::1", 53)),
            ],
        )
        self.assertEqual(self.association.datagramsReceived, 3)
        self.assertEqual(self.association.drops, {})

    def test_dropped(self) -> None:
        """
        Datagrams from anyone but the relay, fragments, and malformed
        headers (short, bad RSV, unknown ATYP, truncated address, empty
        name) are dropped and counted.
        """
        self.port.deliver(HEADER_IPV4 + b"x", ("127.0.0.1", 5001))
        self.port.deliver(HEADER_IPV4 + b"x", ("127.0.0.2", 5000))
        self.port.deliver(HEADER_FRAGMENT + b"x")
        for bad in [
            b"",
            h("00 00 00"),
            h("01 00 00 01 c0 00 02 01 00 35"),
            h("00 00 00 05 c0 00 02 01 00 35"),
            h("00 00 00 01 c0 00 02"),
            h("00 00 00 03 00 00 35"),
        ]:
            self.port.deliver(bad)
        self.assertEqual(self.protocol.received, [])
        self.assertEqual(
            self.association.drops,
            {"not from the relay": 2, "fragmented": 1, "malformed header": 6},
        )

    @given(st.binary(max_size=300))
    def test_anyBytes(self, datagram: bytes) -> None:
        """
        Whatever the relay sends is either delivered or counted as dropped;
        nothing raises.
        """
        before = self.association.datagramsReceived + sum(
            self.association.drops.values()
        )
        self.port.deliver(datagram)
        after = self.association.datagramsReceived + sum(
            self.association.drops.values()
        )
        self.assertEqual(after, before + 1)

    def test_connect(self) -> None:
        """
        After C{connect}, C{write} needs no address and refuses another one,
        and only datagrams from that remote are passed on.
        """
        self.association.connect("192.0.2.1", 53)
        self.association.write(b"hi")
        self.assertEqual(self.port.written, [(HEADER_IPV4 + b"hi", RELAY)])
        self.assertRaises(ValueError, self.association.write, b"hi", ("192.0.2.2", 53))
        self.association.write(b"again", ("192.0.2.1", 53))
        self.port.deliver(HEADER_IPV6 + b"other")
        self.port.deliver(HEADER_NAME + b"named")
        self.port.deliver(HEADER_IPV4 + b"mine")
        self.assertEqual(self.protocol.received, [(b"mine", ("192.0.2.1", 53))])
        self.assertEqual(self.association.drops, {"not from the connected address": 2})
        self.assertRaises(RuntimeError, self.association.connect, "192.0.2.1", 53)

    def test_connectName(self) -> None:
        """
        C{connect} takes an IP address only, as Twisted's UDP ports do.
        """
        self.assertRaises(
            error.InvalidAddressError, self.association.connect, "example.com", 53
        )

    def test_broadcast(self) -> None:
        """
        The broadcast setting is recorded.
        """
        self.assertFalse(self.association.getBroadcastAllowed())
        self.association.setBroadcastAllowed(True)
        self.assertTrue(self.association.getBroadcastAllowed())


class EndTests(SynchronousTestCase):
    """
    Closing the association, and losing its control connection.
    """

    def test_stopListening(self) -> None:
        """
        C{stopListening} closes the control connection and the UDP socket
        and stops the protocol; its L{Deferred} fires once the control
        connection is closed too; C{whenEnded} fires with C{None}.
        """
        exchange = associated()
        association = exchange.association()
        protocol = exchange.protocol
        assert isinstance(protocol, RecordingDatagramProtocol)
        ended: list[object] = []
        association.whenEnded().addBoth(ended.append)
        stopped: list[object] = []
        association.stopListening().addBoth(stopped.append)
        self.assertTrue(exchange.transport.disconnecting)
        self.assertTrue(exchange.port().stopped)
        self.assertEqual(protocol.events, ["startProtocol", "stopProtocol"])
        self.assertIsNone(protocol.transport)
        self.assertEqual(ended, [None])
        self.assertEqual(stopped, [])
        exchange.handshake.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(stopped, [None])
        self.assertEqual(ended, [None])
        again: list[object] = []
        association.stopListening().addBoth(again.append)
        association.whenEnded().addBoth(again.append)
        self.assertEqual(again, [None, None])
        association.write(b"late", ("192.0.2.1", 53))
        exchange.port().deliver(HEADER_IPV4 + b"late")
        self.assertEqual(exchange.port().written, [])
        self.assertEqual(protocol.received, [])

    def test_controlLost(self) -> None:
        """
        When the proxy closes the control connection, the UDP socket closes,
        the protocol stops, and C{whenEnded} fails with the reason, after
        the socket is closed.
        """
        exchange = associated()
        exchange.port().holdStop = True
        association = exchange.association()
        protocol = exchange.protocol
        assert isinstance(protocol, RecordingDatagramProtocol)
        ended: list[Failure] = []
        association.whenEnded().addErrback(ended.append)
        exchange.handshake.connectionLost(Failure(error.ConnectionLost()))
        self.assertTrue(exchange.port().stopped)
        self.assertEqual(protocol.events, ["startProtocol", "stopProtocol"])
        self.assertEqual(ended, [])
        exchange.port().stopping.callback(None)
        [reason] = ended
        reason.trap(error.ConnectionLost)
        late: list[Failure] = []
        association.whenEnded().addErrback(late.append)
        late[0].trap(error.ConnectionLost)
        stopped: list[object] = []
        association.stopListening().addBoth(stopped.append)
        self.assertEqual(stopped, [None])

    def test_endOfFile(self) -> None:
        """
        End-of-file from the proxy closes the control connection, which
        ends the association.
        """
        exchange = associated()
        exchange.handshake.readConnectionLost()
        self.assertTrue(exchange.transport.disconnecting)
        exchange.handshake.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(exchange.port().stopped)
        ended: list[Failure] = []
        exchange.association().whenEnded().addErrback(ended.append)
        ended[0].trap(error.ConnectionDone)


class CancellationAndTimeoutTests(SynchronousTestCase):
    """
    Cancelling C{associate()} before the reply, or a proxy that does not
    answer in time: the control connection is aborted, no UDP socket opens.
    """

    def assertStopped(self, exchange: UDPExchange, cls: type[Exception]) -> None:
        """
        C{associate()} failed with C{cls}; nothing is left behind.
        """
        exchange.failure().trap(cls)
        self.assertEqual(exchange.reactor.getDelayedCalls(), [])
        if exchange.handshake is not None:
            self.assertTrue(exchange.transport.disconnected)
            exchange.receive(RELAY_REPLY)
            exchange.handshake.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(exchange.reactor.udpPorts, [])
        self.assertEqual(len(exchange.results), 1)

    def test_beforeProxyConnected(self) -> None:
        """
        While connecting to the proxy.
        """
        exchange = UDPExchange()
        exchange.deferred.cancel()
        self.assertStopped(exchange, error.ConnectingCancelledError)
        self.assertEqual(exchange.proxy.cancelled, 1)

    def test_duringNegotiation(self) -> None:
        """
        While waiting for the method selection, the RFC 1929 status, or the
        reply.
        """
        for script in [
            b"",
            SELECT_USERPASS,
            SELECT_USERPASS + AUTH_OK + RELAY_REPLY[:4],
        ]:
            exchange = UDPExchange(credentials=("alice", PASSWORD))
            exchange.connectProxy()
            exchange.receive(script)
            exchange.deferred.cancel()
            self.assertStopped(exchange, error.ConnectingCancelledError)

    def test_handshakeTimeout(self) -> None:
        """
        No reply within the handshake timeout fails with
        L{error.TimeoutError}.
        """
        exchange = UDPExchange()
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH)
        exchange.reactor.advance(DEFAULT_HANDSHAKE_TIMEOUT)
        self.assertStopped(exchange, error.TimeoutError)

    def test_noTimerOnceAssociated(self) -> None:
        """
        The association itself has no timer (the proxy has its own idle
        timeout).
        """
        exchange = associated(handshakeTimeout=5)
        self.assertEqual(exchange.reactor.getDelayedCalls(), [])
        exchange.reactor.advance(3600)
        self.assertFalse(exchange.port().stopped)


class UDPEcho(DatagramProtocol):
    """
    Echoes every datagram in upper case, so an answer cannot be mistaken for
    the request looped back.
    """

    noisy = False

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """
        Answer.
        """
        self.transport.write(datagram.upper(), addr)  # type: ignore[union-attr]


class Receiver(RecordingDatagramProtocol):
    """
    Queues what it receives, and records its start and stop.
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue: DeferredQueue[tuple[bytes, tuple[str, int]]] = DeferredQueue()

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """
        Queue the datagram.
        """
        self.queue.put((datagram, addr))


def udpPortAnswers(port: int, timeout: float) -> bool:
    """
    Whether a UDP socket is bound to C{127.0.0.1:port}: a datagram sent to a
    closed port gets ICMP port unreachable, which a connected UDP socket
    reports as C{ECONNREFUSED}; an open port that ignores us lets the wait
    time out.  (Blocking: run in a thread.)
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(timeout)
        probe.connect((LOOPBACK, port))
        probe.send(b"probe")
        try:
            probe.recv(65535)
        except ConnectionRefusedError:
            return False
        except TimeoutError:
            return True
        return True


async def echoed(
    association: SOCKS5UDPAssociation,
    receiver: Receiver,
    payload: bytes,
    echo: tuple[str, int],
) -> tuple[bytes, tuple[str, int]]:
    """
    Send C{payload} to the echo server at C{echo} through C{association},
    again if it is lost (UDP), up to three times; the first answer.

    @raise AssertionError: None came.
    """
    for _ in range(3):
        association.write(payload, echo)
        try:
            answer: tuple[bytes, tuple[str, int]] = await withTimeout(
                receiver.queue.get(), "the echo", seconds=3
            )
        except AssertionError:
            continue
        return answer
    raise AssertionError(f"no echo of {len(payload)} octets")


class LoopbackUDPTestCase(TestCase):
    """
    Associations through a real proxy on loopback, to a UDP echo server.
    """

    timeout = 90

    def setUp(self) -> None:
        udp = cast(IReactorUDP, reactor)
        self.echo = udp.listenUDP(0, UDPEcho(), LOOPBACK, 65535)
        self.addCleanup(self.echo.stopListening)
        self.echoPort: int = self.echo.getHost().port  # type: ignore[attr-defined]

    async def associate(
        self, proxyPort: int, **kwargs: Any
    ) -> tuple[SOCKS5UDPAssociation, Receiver]:
        """
        Open an association through the proxy on C{proxyPort}; close it at
        cleanup.
        """
        proxy = TCP4ClientEndpoint(reactor, LOOPBACK, proxyPort)
        receiver = Receiver()
        association: SOCKS5UDPAssociation = await withTimeout(
            SOCKS5UDPClient(proxy, reactor=reactor, **kwargs).associate(receiver),
            "the association",
        )
        self.addCleanup(association.stopListening)
        self.assertEqual(receiver.events, ["startProtocol"])
        self.assertEqual(association.relayAddress.host, LOOPBACK)
        return association, receiver

    async def roundTrips(
        self,
        association: SOCKS5UDPAssociation,
        receiver: Receiver,
        host: str,
        payloads: list[bytes],
    ) -> None:
        """
        Send C{payloads} to the echo server at C{host} one at a time; each
        comes back transformed, from the echo server's address.  A lost
        datagram is sent again (UDP), at most three times.
        """
        answered: set[bytes] = set()
        for payload in payloads:
            expected = (payload.upper(), (LOOPBACK, self.echoPort))
            for _ in range(3):
                association.write(payload, (host, self.echoPort))
                try:
                    answer = await withTimeout(
                        receiver.queue.get(), "an echo", seconds=3
                    )
                    # A late answer to an earlier, resent datagram is skipped.
                    while answer != expected and answer[0] in answered:
                        answer = await withTimeout(
                            receiver.queue.get(), "an echo", seconds=3
                        )
                except AssertionError:
                    continue
                break
            else:
                self.fail(f"no answer to {payload[:20]!r} via {host}")
            self.assertEqual(answer, expected)
            answered.add(expected[0])

    @staticmethod
    def payloads() -> list[bytes]:
        """
        Datagrams of several sizes, up to one that a 8 KiB read would cut.
        """
        return [b"first", b"second datagram", b"x" * 1200, b"y" * 20000, b""]


class OurServerUDPTests(LoopbackUDPTestCase):
    """
    UDP ASSOCIATE through our own server.
    """

    async def startServer(self, **kwargs: Any) -> tuple[int, Any]:
        """
        Start our server; see L{startOurServer}.
        """
        return await startOurServer(self, **kwargs)

    def watchAssociationEnds(self) -> list[LogEvent]:
        """
        Collect the server's "UDP association ... ended" log events.
        """
        events: list[LogEvent] = []

        def observe(event: LogEvent) -> None:
            if "UDP association" in event.get("log_format", ""):
                events.append(event)

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    @asyncTest
    async def test_roundTripsByIP(self) -> None:
        """
        Several datagrams to the echo server by IP come back, from it.
        """
        port, _ = await self.startServer()
        association, receiver = await self.associate(port)
        await self.roundTrips(association, receiver, LOOPBACK, self.payloads())
        self.assertEqual(association.drops, {})

    @asyncTest
    async def test_roundTripsByName(self) -> None:
        """
        Datagrams to "localhost" (ATYP 3, resolved by the server) come back
        from the echo server's address.
        """
        port, _ = await self.startServer()
        association, receiver = await self.associate(port)
        await self.roundTrips(association, receiver, "localhost", [b"named", b"again"])

    @asyncTest
    async def test_usernamePassword(self) -> None:
        """
        An association after RFC 1929 authentication.
        """
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"s3cret")
        port, _ = await self.startServer(portal=portalFor([checker]))
        association, receiver = await self.associate(
            port, credentials=("alice", "s3cret")
        )
        await self.roundTrips(association, receiver, LOOPBACK, [b"authenticated"])

    @asyncTest
    async def test_close(self) -> None:
        """
        C{stopListening} ends the association on the server: its session
        ends, its log event counts our datagrams, and its UDP port, which
        was open, is closed.  Our own UDP socket is closed too.
        """
        ends = self.watchAssociationEnds()
        port, factory = await self.startServer()
        association, receiver = await self.associate(port)
        await self.roundTrips(association, receiver, LOOPBACK, [b"a", b"b", b"c"])
        relayPort = association.relayAddress.port
        localPort = association.getHost().port
        self.assertTrue(await deferToThread(udpPortAnswers, relayPort, 0.5))
        await withTimeout(association.stopListening(), "the association to close")
        self.assertEqual(receiver.events, ["startProtocol", "stopProtocol"])
        await waitUntil(lambda: not factory.sessions, "the session to end")
        self.assertEqual(len(ends), 1)
        self.assertEqual(ends[0]["datagramsFromClient"], 3)
        self.assertEqual(ends[0]["datagramsToClient"], 3)
        self.assertFalse(await deferToThread(udpPortAnswers, relayPort, 2.0))
        self.assertFalse(await deferToThread(udpPortAnswers, localPort, 2.0))

    @asyncTest
    async def test_controlLost(self) -> None:
        """
        When the server closes the control connection, C{whenEnded} fails
        with the reason, the protocol is stopped and our UDP socket closed.
        """
        port, factory = await self.startServer()
        association, receiver = await self.associate(port)
        localPort = association.getHost().port
        ended = association.whenEnded()
        await waitUntil(lambda: bool(factory.sessions), "the server's session")
        for session in list(factory.sessions):
            session.transport.loseConnection()
        with self.assertRaises(error.ConnectionDone):
            await withTimeout(ended, "the association to end")
        self.assertEqual(receiver.events, ["startProtocol", "stopProtocol"])
        self.assertFalse(await deferToThread(udpPortAnswers, localPort, 2.0))


class DanteUDPTests(LoopbackUDPTestCase):
    """
    UDP ASSOCIATE through Dante (C{danted}); its C{external: 127.0.0.1}
    makes the relay loopback.
    """

    async def start(self, **kwargs: Any) -> ThirdPartyServer:
        """
        Start Dante in a thread (the starter blocks until it listens).
        """
        server: ThirdPartyServer = await deferToThread(
            startDante, self, commands=("connect", "udpassociate"), **kwargs
        )
        return server

    @asyncTest
    async def test_roundTripsByIP(self) -> None:
        """
        Several datagrams to the echo server by IP come back, from it.
        """
        server = await self.start()
        association, receiver = await self.associate(server.port)
        await self.roundTrips(association, receiver, LOOPBACK, self.payloads())

    @asyncTest
    async def test_roundTripsByName(self) -> None:
        """
        Datagrams to "localhost", resolved by Dante, come back from the echo
        server's address.
        """
        server = await self.start()
        association, receiver = await self.associate(server.port)
        await self.roundTrips(association, receiver, "localhost", [b"named", b"again"])

    @asyncTest
    async def test_usernamePassword(self) -> None:
        """
        An association after RFC 1929 authentication against a system
        account.
        """
        server = await self.start(auth=True)
        assert server.username is not None and server.password is not None
        association, receiver = await self.associate(
            server.port, credentials=(server.username, server.password)
        )
        await self.roundTrips(association, receiver, LOOPBACK, [b"authenticated"])

    @asyncTest
    async def test_close(self) -> None:
        """
        C{stopListening} makes Dante close its relay socket.
        """
        server = await self.start()
        association, receiver = await self.associate(server.port)
        await self.roundTrips(association, receiver, LOOPBACK, [b"a"])
        relayPort = association.relayAddress.port
        await withTimeout(association.stopListening(), "the association to close")

        async def closed() -> bool:
            return not await deferToThread(udpPortAnswers, relayPort, 0.5)

        for _ in range(20):
            if await closed():
                break
        else:
            self.fail("Dante's relay port still open")


class ProtectedAssociationTests(SynchronousTestCase):
    """
    An association whose control connection is under GSS-API protection
    (a stand-in context; Kerberos in L{tests.client.test_gssapi_ourserver}):
    each datagram, header included, goes to the relay as one MTYP 3
    message, and each from the relay must be one.
    """

    def setUp(self) -> None:
        self.context = _Context()
        control = SOCKSTunnelTransport(
            TCPStringTransport(),
            IPv4Address("TCP", "0.0.0.0", 0),
            IPv4Address("TCP", *RELAY),
            lambda: None,
            DatagramWrapper(self.context, ProtectionLevel.CONFIDENTIALITY),
        )
        self.protocol = RecordingDatagramProtocol()
        self.association = SOCKS5UDPAssociation(self.protocol, RELAY, control)
        self.port = FakeUDPPort(self.association._newReceiver(), "", 65535)
        self.association._listening(cast(IListeningPort, self.port))

    def test_wrapped(self) -> None:
        """
        The header and the payload are wrapped together.
        """
        self.association.write(b"query", ("192.0.2.1", 53))
        self.assertEqual(
            self.port.written,
            [(encapsulatedMessage(b"<" + HEADER_IPV4 + b"query>"), RELAY)],
        )

    def test_unwrapped(self) -> None:
        """
        A wrapped datagram from the relay reaches the protocol; a plain one,
        or one the context refuses, is dropped and counted.
        """
        self.port.deliver(HEADER_IPV4 + b"plain")
        self.port.deliver(encapsulatedMessage(HEADER_IPV4 + b"forged"))
        self.port.deliver(encapsulatedMessage(b"<" + HEADER_IPV4 + b"answer>"))
        self.assertEqual(self.protocol.received, [(b"answer", ("192.0.2.1", 53))])
        self.assertEqual(dict(self.association.drops), {"GSS-API unwrap failed": 2})

    def test_tooLong(self) -> None:
        """
        A datagram whose wrapping would not fit one message is refused
        with C{MessageLengthError}, as a datagram too long for the socket
        is; nothing is sent.
        """
        self.assertRaises(
            error.MessageLengthError,
            self.association.write,
            b"x" * self.context.chunk,
            ("192.0.2.1", 53),
        )
        self.assertEqual(self.port.written, [])

    def test_wrapFails(self) -> None:
        """
        A context that can no longer wrap: L{errors.SOCKSProtocolError}.
        """
        self.context.failing = True
        exception = self.assertRaises(
            errors.SOCKSProtocolError,
            self.association.write,
            b"query",
            ("192.0.2.1", 53),
        )
        self.assertIn("no context", str(exception))
        self.assertEqual(self.port.written, [])
