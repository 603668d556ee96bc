"""
The server's hardening on fake transports: clients that leave before their
reply, the server's own addresses, other protocols on the SOCKS port,
escaped log lines, and the command interface.
"""

import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._wire import Command
from socks_twisted.server import SOCKSServerFactory, SOCKSServerProtocol, _session
from socks_twisted.server._command import Outcome
from socks_twisted.server._foreign import Foreign, identify
from socks_twisted.server._own import OwnAddresses, isLocalAddress
from socks_twisted.server._session import DEPARTURE_GRACE, LINGER_TIMEOUT
from socks_twisted.server._sessionlog import escape
from socks_twisted.server._udp import UDPAssociation

from ._fakes import (
    SERVER_ADDRESS,
    FakeListeners,
    HalfCloseTransport,
    connectClient,
    makeFactory,
)
from .test_session import (
    CONNECT_IPV4,
    GREETING_NO_AUTH,
    SOCKS4_REJECTED,
    LogCapture,
    failure5,
)

# CONNECT 127.0.0.1:1080, the server's own address in these tests
CONNECT_OWN = bytes.fromhex("05 01 00 01 7f000001 0438")
# CONNECT localhost:1080
CONNECT_LOCALHOST_OWN = bytes.fromhex("05 01 00 03 09 6c6f63616c686f7374 0438")
# SOCKS4 CONNECT 127.0.0.1:1080, no user ID
SOCKS4_CONNECT_OWN = bytes.fromhex("04 01 0438 7f000001 00")
# BIND expecting the peer 127.0.0.1:1080
BIND_OWN = bytes.fromhex("05 02 00 01 7f000001 0438")
# BIND expecting the peer from 127.0.0.2
BIND_FROM_127_0_0_2 = bytes.fromhex("05 02 00 01 7f000002 0000")
# UDP ASSOCIATE, client port unknown
UDP_ASSOCIATE = bytes.fromhex("05 03 00 01 00000000 0000")
# RFC 1929 user "a", password "b"
CREDENTIALS_A_B = bytes.fromhex("01 01 61 01 62")


class DepartureTests(SynchronousTestCase):
    """
    A client that sends end-of-file before its reply keeps nothing beyond
    the grace: not its slot, its credential check, its dial or its BIND
    listener.
    """

    def test_leavesWhileConnecting(self) -> None:
        """
        End-of-file while the target is dialled: within the grace the dial
        goes on; after it, the dial is cancelled, the connection closed
        without a reply, and the log says the client left while connecting.
        """
        log = LogCapture(self)
        factory, reactor, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        transport.clear()
        protocol.readConnectionLost()
        reactor.advance(DEPARTURE_GRACE - 0.1)
        self.assertFalse(dialler.attempts[0].cancelled)
        self.assertFalse(transport.disconnecting)
        reactor.advance(0.2)
        self.assertTrue(dialler.attempts[0].cancelled)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(factory.sessions, set())
        [event] = log.sessionEvents()
        self.assertIn("client left during connecting", event["reason"])
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_leavesWhileAuthenticating(self) -> None:
        """
        End-of-file while credentials are checked: the check is cancelled
        after the grace.
        """
        log = LogCapture(self)
        factory, reactor, _ = makeFactory(users={b"a": b"b"})
        portal = factory.settings.portal
        assert portal is not None
        checks: list[defer.Deferred[Any]] = []

        def neverAnswers(*args: object) -> defer.Deferred[Any]:
            checks.append(defer.Deferred())
            return checks[-1]

        portal.login = neverAnswers  # type: ignore[method-assign,assignment]
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01 02") + CREDENTIALS_A_B)
        protocol.readConnectionLost()
        reactor.advance(DEPARTURE_GRACE + 0.1)
        self.assertTrue(checks[0].called)  # cancelled
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertIn("client left during authentication", event["reason"])

    def test_pipelinedAuthenticationAndRequestServed(self) -> None:
        """
        A client that pipelined greeting, credentials, request and data and
        then half-closed is served if everything completes within the grace:
        the target gets the data and then the half-close.
        """
        factory, reactor, dialler = makeFactory(users={b"a": b"b"})
        protocol, transport = connectClient(factory)
        protocol.dataReceived(
            bytes.fromhex("05 01 02") + CREDENTIALS_A_B + CONNECT_IPV4 + b"body"
        )
        protocol.readConnectionLost()
        reactor.advance(DEPARTURE_GRACE / 2)
        _, targetTransport = dialler.attempts[0].succeed()
        self.assertEqual(targetTransport.value(), b"body")
        self.assertTrue(targetTransport.writeShut)
        reactor.advance(DEPARTURE_GRACE)
        self.assertFalse(transport.disconnecting)

    def test_leavesWhileWaitingForBindPeer(self) -> None:
        """
        End-of-file after BIND's first reply: the listener is closed after
        the grace, and no peer is accepted.
        """
        log = LogCapture(self)
        listeners = FakeListeners()
        factory, reactor, _ = makeFactory(listeners=listeners, bindTimeout=120.0)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + BIND_FROM_127_0_0_2)
        self.assertEqual(listeners.openPorts(), 1)
        protocol.readConnectionLost()
        reactor.advance(DEPARTURE_GRACE + 0.1)
        self.assertEqual(listeners.openPorts(), 0)
        self.assertTrue(transport.disconnecting)
        _, peerFactory = listeners.tcp[0]
        self.assertIsNone(
            peerFactory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 5555))
        )
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertIn("client left during waiting for the BIND peer", event["reason"])

    def test_refusalAfterEOFClosesAtOnce(self) -> None:
        """
        A refusal that comes within the grace is written, and the connection
        closed at once: the client has nothing more to send, so there is no
        linger.
        """
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        transport.clear()
        protocol.readConnectionLost()
        dialler.attempts[0].fail(error.ConnectionRefusedError())
        self.assertEqual(transport.value(), failure5(0x05))
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.writeShut)

    def test_eofWhileLingering(self) -> None:
        """
        A refused client that then closes its side ends the linger at once.
        """
        factory, reactor, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01 00 09 00"))  # bad command
        self.assertTrue(transport.writeShut)
        self.assertFalse(transport.disconnecting)
        protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_resetReleasesAtOnce(self) -> None:
        """
        A client that leaves with a reset is forgotten at once, its dial
        cancelled.
        """
        factory, _, dialler = makeFactory(maxSessions=1)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        self.assertIsNone(factory.buildProtocol(None))
        protocol.connectionLost(Failure(error.ConnectionLost()))
        self.assertTrue(dialler.attempts[0].cancelled)
        self.assertIsNotNone(factory.buildProtocol(None))

    def test_udpAssociateAfterEOF(self) -> None:
        """
        A client that pipelined credentials and a UDP ASSOCIATE and then
        half-closed: the association is answered and ended at once, since
        its control connection is already closing.
        """
        listeners = FakeListeners()
        factory, _, _ = makeFactory(users={b"a": b"b"}, listeners=listeners)
        portal = factory.settings.portal
        assert portal is not None
        login: defer.Deferred[Any] = defer.Deferred()
        portal.login = lambda *args: login  # type: ignore[method-assign]
        protocol, transport = connectClient(factory)
        protocol.dataReceived(
            bytes.fromhex("05 01 02") + CREDENTIALS_A_B + UDP_ASSOCIATE
        )
        protocol.readConnectionLost()
        self.assertFalse(transport.disconnecting)
        login.callback((None, _User(b"a"), lambda: None))
        self.assertEqual(
            transport.value()[-10:-2], bytes.fromhex("05 00 00 01 7f000001")
        )
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(listeners.openPorts(), 0)


class _User:
    def __init__(self, username: bytes) -> None:
        self.username = username


class OwnAddressTests(SynchronousTestCase):
    """
    The server refuses to reach its own listening addresses.
    """

    def test_connectToOwnAddress(self) -> None:
        """
        SOCKS5 CONNECT to the address the client reached the server at:
        0x02, nothing dialled, the reason logged.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_OWN)
        self.assertEqual(dialler.attempts, [])
        self.assertEqual(transport.value()[2:], failure5(0x02))
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertIn("own listening address", event["reason"])

    def test_socks4ConnectToOwnAddress(self) -> None:
        """
        SOCKS4: 91.
        """
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(SOCKS4_CONNECT_OWN)
        self.assertEqual(dialler.attempts, [])
        self.assertEqual(transport.value(), SOCKS4_REJECTED)

    def test_registeredWildcardListener(self) -> None:
        """
        A wildcard listener registered with C{addListeningAddress} makes
        every local address with its port the server's own, IPv4-mapped
        IPv6 included; another port is not (on another host: being public,
        the server's default rules deny loopback destinations as such).
        """
        factory, _, dialler = makeFactory()
        factory.addListeningAddress(IPv4Address("TCP", "0.0.0.0", 1999))
        for target in ("7f000002", "7f000001"):
            protocol, transport = connectClient(factory)
            protocol.dataReceived(
                GREETING_NO_AUTH + bytes.fromhex(f"05 01 00 01 {target} 07cf")
            )
            self.assertEqual(transport.value()[2:], failure5(0x02))
        protocol, transport = connectClient(factory)
        protocol.dataReceived(
            GREETING_NO_AUTH
            + bytes.fromhex("05 01 00 04 00000000000000000000ffff7f000001 07cf")
        )
        self.assertEqual(transport.value()[2:], failure5(0x02))
        self.assertEqual(dialler.attempts, [])
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            GREETING_NO_AUTH + bytes.fromhex("05 01 00 01 c0000201 07d0")
        )
        self.assertEqual(len(dialler.attempts), 1)

    def test_nameThatResolvesToOwnAddress(self) -> None:
        """
        A name is checked once dialled: a connection that reached the server
        itself is aborted and the request refused with 0x02.
        """
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_LOCALHOST_OWN)
        transport.clear()
        _, targetTransport = dialler.attempts[0].succeed()
        self.assertEqual(transport.value(), failure5(0x02))
        self.assertTrue(targetTransport.disconnecting)

    def test_bindForOwnAddress(self) -> None:
        """
        A BIND whose expected peer is the server's own address: 0x02, no
        listener.
        """
        listeners = FakeListeners()
        factory, _, _ = makeFactory(listeners=listeners)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + BIND_OWN)
        self.assertEqual(transport.value()[2:], failure5(0x02))
        self.assertEqual(listeners.tcp, [])

    def test_udpDatagramToOwnAddress(self) -> None:
        """
        A UDP datagram for the server's own address is dropped and counted;
        one for another target is sent.
        """
        association = UDPAssociation(
            "127.0.0.1",
            0,
            socket.AF_INET,
            FakeListeners().resolve,
            {("127.0.0.1", 1080)},
        )
        listeners = FakeListeners()
        listeners.listenUDP("127.0.0.1", association)
        [(udp, _)] = listeners.udp
        header = bytes.fromhex("0000 00 01 7f000001")
        association.datagramReceived(
            header + bytes.fromhex("0438") + b"x", ("127.0.0.1", 5000)
        )
        association.datagramReceived(
            header + bytes.fromhex("0035") + b"y", ("127.0.0.1", 5000)
        )
        self.assertEqual(udp.sent, [(b"y", ("127.0.0.1", 53))])
        self.assertEqual(association.drops["own address"], 1)


class OwnAddressesTests(SynchronousTestCase):
    """
    L{OwnAddresses} and L{isLocalAddress}.
    """

    def test_exact(self) -> None:
        """
        A specific listener matches its address and port only.
        """
        own = OwnAddresses()
        own.add(IPv4Address("TCP", "127.0.0.1", 1080))
        own.add(UNIXAddress(b"/tmp/socks.sock"))
        self.assertIn(("127.0.0.1", 1080), own)
        self.assertIn(("::ffff:127.0.0.1", 1080), own)
        self.assertNotIn(("127.0.0.2", 1080), own)
        self.assertNotIn(("127.0.0.1", 1081), own)
        self.assertNotIn("127.0.0.1:1080", own)

    def test_wildcards(self) -> None:
        """
        C{::} covers both families; C{0.0.0.0} covers IPv4 only; an address
        that is not this machine's is never ours.
        """
        own = OwnAddresses()
        own.add(IPv4Address("TCP", "0.0.0.0", 1080))
        own.add(IPv6Address("TCP", "::", 1081))
        self.assertIn(("127.0.0.9", 1080), own)
        self.assertNotIn(("::1", 1080), own)
        self.assertIn(("::1", 1081), own)
        self.assertIn(("127.0.0.1", 1081), own)
        self.assertNotIn(("192.0.2.1", 1080), own)  # TEST-NET-1: never local

    def test_isLocalAddress(self) -> None:
        """
        Loopback is local; a documentation address is not.
        """
        self.assertTrue(isLocalAddress("127.3.2.1"))
        self.assertTrue(isLocalAddress("::1"))
        self.assertFalse(isLocalAddress("192.0.2.1"))
        self.assertFalse(isLocalAddress("2001:db8::1"))


class ForeignProtocolTests(SynchronousTestCase):
    """
    HTTP and TLS sent to the SOCKS port.
    """

    def test_identify(self) -> None:
        """
        Method tokens mark HTTP, C{16 03} marks TLS, prefixes wait, anything
        else is unknown.
        """
        self.assertIs(identify(b"GET / HTTP/1.1"), Foreign.HTTP)
        self.assertIs(identify(b"CONNECT example.com:443"), Foreign.HTTP)
        self.assertIs(identify(b"PUT "), Foreign.HTTP)
        self.assertIs(identify(b"CONNEC"), Foreign.UNDECIDED)
        self.assertIs(identify(b"P"), Foreign.UNDECIDED)
        self.assertIs(identify(b"\x16"), Foreign.UNDECIDED)
        self.assertIs(identify(b"\x16\x03\x01\x02\x00"), Foreign.TLS)
        self.assertIs(identify(b"\x16\x04"), Foreign.UNKNOWN)
        self.assertIs(identify(b"GETX"), Foreign.UNKNOWN)
        self.assertIs(identify(b"\x00"), Foreign.UNKNOWN)

    def test_httpByteByByte(self) -> None:
        """
        An HTTP request arriving one byte at a time gets the 501 answer
        once its method is read, and nothing before.
        """
        factory, _, _ = makeFactory()
        protocol, transport = connectClient(factory)
        request = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"
        for i in range(len(b"CONNECT")):
            protocol.dataReceived(request[i : i + 1])
            self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b" ")
        self.assertTrue(transport.value().startswith(b"HTTP/1.0 501 "))
        self.assertTrue(transport.writeShut)

    def test_tls(self) -> None:
        """
        A TLS ClientHello is closed without a reply; the log names it.
        """
        log = LogCapture(self)
        factory, _, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("16 03 01 00 c8 01 00 00 c4 03 03"))
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.closing)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertIn("TLS ClientHello", event["reason"])
        self.assertIsNone(event["reply"])  # no reply was sent

    def test_unknownAfterPrefix(self) -> None:
        """
        A prefix that starts like HTTP and then is not: the wire layer's
        error, with SOCKS' silence.
        """
        log = LogCapture(self)
        factory, _, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(b"GE")
        protocol.dataReceived(b"Z")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.closing)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertIn("not a SOCKS request", log.text())

    def test_socksSplitAfterVersion(self) -> None:
        """
        A SOCKS5 greeting split after its first byte is still SOCKS: the
        second chunk is not mistaken for another protocol.
        """
        factory, _, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(b"\x05")
        protocol.dataReceived(b"\x01\x00")
        self.assertEqual(transport.value(), bytes.fromhex("05 00"))


class LogEscapingTests(SynchronousTestCase):
    """
    No client-controlled string reaches a log line raw.
    """

    def test_escape(self) -> None:
        """
        Printable ASCII stays; control bytes, the backslash and non-ASCII
        become C{\\xNN}.
        """
        self.assertEqual(escape(b"alice"), "alice")
        self.assertEqual(escape(b"a\nb\r\x1b[31m"), "a\\x0ab\\x0d\\x1b[31m")
        self.assertEqual(escape("\\x0a"), "\\x5cx0a")
        self.assertEqual(escape("é"), "\\xc3\\xa9")
        self.assertEqual(escape(b"\x7f\x00"), "\\x7f\\x00")
        self.assertEqual(escape("a b"), "a\\x20b")
        self.assertEqual(escape("a b", spaces=True), "a b")

    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(st.binary(max_size=40), st.text(max_size=40)),
        st.booleans(),
    )
    def test_escapeEveryByte(self, value: bytes | str, spaces: bool) -> None:
        """
        Whatever the value, the escape is the byte-by-byte one: each byte
        of the (UTF-8) value kept if printable ASCII other than the
        backslash (and the space, unless kept), else C{\\xNN}.
        """
        raw = (
            value.encode("utf-8", "surrogateescape")
            if isinstance(value, str)
            else value
        )
        keep = set(range(0x20, 0x7F)) - {0x5C} - (set() if spaces else {0x20})
        expected = "".join(chr(b) if b in keep else f"\\x{b:02x}" for b in raw)
        self.assertEqual(escape(value, spaces=spaces), expected)

    def test_noForgedFields(self) -> None:
        """
        A user name that spells other fields of the line stays one field:
        its spaces are escaped.
        """
        log = LogCapture(self)
        user = b"alice version=4 command=CONNECT target=evil:1 reply=0"
        factory, _, _ = makeFactory(users={user: b"pw"})
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            bytes.fromhex("05 01 02 01")
            + bytes([len(user)])
            + user
            + bytes.fromhex("02 7777")
        )
        protocol.connectionLost(Failure(error.ConnectionDone()))
        text = formatEvent(log.sessionEvents()[0])
        self.assertEqual(text.count(" version="), 1)
        self.assertEqual(text.count(" reply="), 1)
        self.assertIn("user=alice\\x20version=4\\x20command=CONNECT", text)

    def test_forgedUsername(self) -> None:
        """
        A username with a newline, a carriage return and an ANSI escape is
        logged escaped: the formatted line has none of them.
        """
        log = LogCapture(self)
        user = b"x\nINFO FORGED login ok\r\x1b[31m"
        factory, _, _ = makeFactory(users={user: b"pw"})
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            bytes.fromhex("05 01 02 01")
            + bytes([len(user)])
            + user
            + bytes.fromhex("02 7777")
        )
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        text = formatEvent(event)
        for raw in ("\n", "\r", "\x1b"):
            self.assertNotIn(raw, text)
        self.assertIn("user=x\\x0aINFO\\x20FORGED\\x20login\\x20ok\\x0d\\x1b[31m", text)
        self.assertNotIn("ww", text)  # the password

    def test_socks4aNameAndVersion(self) -> None:
        """
        A SOCKS4a name with an escape byte is logged escaped, as version 4a;
        the user ID too.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, _ = connectClient(factory)
        protocol.dataReceived(
            bytes.fromhex("04 01 0050 00000001")
            + b"u\x07\x00"
            + b"evil\x1b.example\x00"
        )
        dialler.attempts[0].fail(error.DNSLookupError("evil\x1b.example"))
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        text = formatEvent(event)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertIn("target=evil\\x1b.example:80", text)
        self.assertIn("user=u\\x07", text)
        self.assertEqual(event["version"], "4a")

    def test_addresses(self) -> None:
        """
        IPv6 clients and targets are written in brackets; SOCKS4 is version
        4.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, _ = connectClient(
            factory,
            client=IPv6Address("TCP", "::1", 50000),
            server=IPv6Address("TCP", "::1", 1080),
        )
        protocol.dataReceived(
            GREETING_NO_AUTH
            + bytes.fromhex("05 01 00 04 00000000000000000000000000000001 0050")
        )
        dialler.attempts[0].fail(error.ConnectionRefusedError())
        protocol.connectionLost(Failure(error.ConnectionDone()))
        protocol4, _ = connectClient(factory)
        protocol4.dataReceived(bytes.fromhex("04 01 0050 7f000001 00"))
        dialler.attempts[1].fail(error.ConnectionRefusedError())
        protocol4.connectionLost(Failure(error.ConnectionDone()))
        first, second = log.sessionEvents()
        self.assertEqual(first["client"], "[::1]:50000")
        self.assertEqual(first["target"], "[::1]:80")
        self.assertEqual(second["version"], "4")

    def test_unixClient(self) -> None:
        """
        A client on a UNIX socket is named by the socket's path.
        """
        log = LogCapture(self)
        factory, _, _ = makeFactory()
        protocol = factory.buildProtocol(UNIXAddress(None))
        assert protocol is not None
        transport = HalfCloseTransport(
            hostAddress=UNIXAddress(b"/run/socks.sock"), peerAddress=UNIXAddress(None)
        )
        protocol.makeConnection(transport)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertEqual(event["client"], "unix:/run/socks.sock")


class CommandInterfaceTests(SynchronousTestCase):
    """
    The session's side of the command interface.
    """

    def test_handlerBug(self) -> None:
        """
        A handler that fails with something other than a refusal gets a
        general failure reply and a logged traceback, not a hung session.
        """
        log = LogCapture(self)

        def broken(request: object, context: object) -> defer.Deferred[Outcome]:
            return defer.fail(RuntimeError("bug"))

        handlers = dict(_session.HANDLERS)
        handlers[Command.CONNECT] = broken
        self.patch(_session, "HANDLERS", handlers)
        factory, _, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        self.assertEqual(transport.value()[2:], failure5(0x01))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertIn("internal error", log.sessionEvents()[0]["reason"])

    def test_settingsOrFields(self) -> None:
        """
        A factory takes a settings object or its fields, not both.
        """
        from twisted.internet.testing import MemoryReactorClock

        from socks_twisted.server import ServerSettings

        settings = ServerSettings(maxSessions=3)
        factory = SOCKSServerFactory(MemoryReactorClock(), settings=settings)
        self.assertIs(factory.settings, settings)
        self.assertRaises(
            TypeError,
            SOCKSServerFactory,
            MemoryReactorClock(),
            settings=settings,
            maxSessions=4,
        )

    def test_lingerStillBounded(self) -> None:
        """
        A refused client that never closes is closed after the linger.
        """
        factory, reactor, _ = makeFactory()
        protocol, transport = connectClient(factory, server=SERVER_ADDRESS)
        protocol.dataReceived(bytes.fromhex("05 01 00 09 00"))
        reactor.advance(LINGER_TIMEOUT + 0.1)
        self.assertTrue(transport.disconnecting)
        self.assertIsInstance(protocol, SOCKSServerProtocol)
