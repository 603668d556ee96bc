"""
The server session on fake transports: every reply code, every bad input,
the deadlines and the session limit.  Wire bytes are written by hand from
RFC 1928, RFC 1929 and the SOCKS4/4a texts.
"""

import errno
from typing import Any, cast

from twisted.internet import error
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted.server import SOCKSServerProtocol
from socks_twisted.server._session import HOLD_LIMIT, LINGER_TIMEOUT

from ._fakes import (
    FakeDialler,
    HalfCloseTransport,
    connectClient,
    makeFactory,
)

GREETING_NO_AUTH = bytes.fromhex("05 01 00")
CHOSE_NO_AUTH = bytes.fromhex("05 00")
# CONNECT 127.0.0.1:80
CONNECT_IPV4 = bytes.fromhex("05 01 00 01 7f000001 0050")
# CONNECT [2001:db8::1]:443
CONNECT_IPV6 = bytes.fromhex("05 01 00 04 20010db8000000000000000000000001 01bb")
# CONNECT example.com:80
CONNECT_NAME = bytes.fromhex("05 01 00 03 0b 6578616d706c652e636f6d 0050")
# success, BND 127.0.0.1:40000 (0x9c40)
SUCCESS_BND = bytes.fromhex("05 00 00 01 7f000001 9c40")
# SOCKS4 CONNECT 127.0.0.1:80, user "fred"
SOCKS4_CONNECT = bytes.fromhex("04 01 0050 7f000001 66726564 00")
# SOCKS4a CONNECT example.com:80, user "fred"
SOCKS4A_CONNECT = bytes.fromhex(
    "04 01 0050 00000001 66726564 00 6578616d706c652e636f6d 00"
)
SOCKS4_GRANTED_BND = bytes.fromhex("00 5a 9c40 7f000001")
SOCKS4_REJECTED = bytes.fromhex("00 5b 0000 00000000")


def failure5(code: int) -> bytes:
    """
    A SOCKS5 failure reply with an all-zero IPv4 BND, as the server sends.
    """
    return bytes([5, code]) + bytes.fromhex("00 01 00000000 0000")


class LogCapture:
    """
    Collects log events for the duration of a test.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        case.addCleanup(globalLogPublisher.removeObserver, observer)

    def sessionEvents(self) -> list[LogEvent]:
        """
        The session summary events.
        """
        return [e for e in self.events if "SOCKS session" in e.get("log_format", "")]

    def text(self) -> str:
        """
        Every event, formatted.
        """
        return "\n".join(formatEvent(e) for e in self.events)


class SessionTestMixin:
    """
    Helpers to run a client session against a fake factory.
    """

    def openSOCKS5(
        self, case: SynchronousTestCase, request: bytes, **settings: Any
    ) -> tuple[SOCKSServerProtocol, HalfCloseTransport, FakeDialler]:
        factory, self.reactor, dialler = makeFactory(**settings)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH)
        case.assertEqual(transport.value(), CHOSE_NO_AUTH)
        transport.clear()
        protocol.dataReceived(request)
        return protocol, transport, dialler


class ConnectTests(SessionTestMixin, SynchronousTestCase):
    """
    SOCKS5 CONNECT to each address type, and its success reply.
    """

    def test_ipv4Success(self) -> None:
        """
        An IPv4 target is dialled as given; the reply carries the outbound
        connection's local address, and bytes flow both ways.
        """
        protocol, transport, dialler = self.openSOCKS5(self, CONNECT_IPV4)
        [attempt] = dialler.attempts
        self.assertEqual((attempt.host, attempt.port), ("127.0.0.1", 80))
        self.assertEqual(transport.value(), b"")
        target, targetTransport = attempt.succeed()
        self.assertEqual(transport.value(), SUCCESS_BND)
        transport.clear()
        protocol.dataReceived(b"ping")
        self.assertEqual(targetTransport.value(), b"ping")
        target.dataReceived(b"pong")
        self.assertEqual(transport.value(), b"pong")

    def test_ipv6Target(self) -> None:
        """
        An IPv6 target arrives as all 16 bytes and is dialled as such; an IPv6
        BND goes out with ATYP 4.
        """
        _, transport, dialler = self.openSOCKS5(self, CONNECT_IPV6)
        [attempt] = dialler.attempts
        self.assertEqual((attempt.host, attempt.port), ("2001:db8::1", 443))
        attempt.succeed(bound=("::1", 40000))
        self.assertEqual(
            transport.value(),
            bytes.fromhex("05 00 00 04 00000000000000000000000000000001 9c40"),
        )

    def test_nameTarget(self) -> None:
        """
        A name is handed to the dialler unresolved: the server resolves it.
        """
        _, _, dialler = self.openSOCKS5(self, CONNECT_NAME)
        self.assertEqual(
            [(a.host, a.port) for a in dialler.attempts], [("example.com", 80)]
        )

    def test_pipelinedDataDeliveredAfterConnect(self) -> None:
        """
        Bytes sent with the request and while connecting reach the target in
        order, once, after the connection is made.  The client's reading goes
        on meanwhile, so that its leaving is noticed.
        """
        protocol, transport, dialler = self.openSOCKS5(self, CONNECT_IPV4 + b"one,")
        protocol.dataReceived(b"two")
        self.assertEqual(transport.producerState, "producing")
        _, targetTransport = dialler.attempts[0].succeed()
        self.assertEqual(targetTransport.value(), b"one,two")

    def test_earlyDataBounded(self) -> None:
        """
        Past HOLD_LIMIT bytes held for a target not yet connected, the
        client's reading pauses; it resumes once they are delivered.
        """
        protocol, transport, dialler = self.openSOCKS5(self, CONNECT_IPV4)
        chunk = b"x" * 16384
        for _ in range(HOLD_LIMIT // len(chunk)):
            protocol.dataReceived(chunk)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"!")
        self.assertEqual(transport.producerState, "paused")
        _, targetTransport = dialler.attempts[0].succeed()
        self.assertEqual(len(targetTransport.value()), HOLD_LIMIT + 1)
        self.assertEqual(transport.producerState, "producing")

    def test_eofWhileConnecting(self) -> None:
        """
        A client that half-closes while the server dials gets its bytes
        delivered and then the half-close, once connected.
        """
        protocol, _, dialler = self.openSOCKS5(self, CONNECT_IPV4 + b"last words")
        protocol.readConnectionLost()
        _, targetTransport = dialler.attempts[0].succeed()
        self.assertEqual(targetTransport.value(), b"last words")
        self.assertTrue(targetTransport.writeShut)

    def test_unspecifiedAddressRefused(self) -> None:
        """
        0.0.0.0 is not a target (Linux would dial the local host): 0x04.
        """
        _, transport, dialler = self.openSOCKS5(
            self, bytes.fromhex("05 01 00 01 00000000 0050")
        )
        self.assertEqual(dialler.attempts, [])
        self.assertEqual(transport.value(), failure5(0x04))
        self.assertTrue(transport.closing)


class ConnectFailureTests(SessionTestMixin, SynchronousTestCase):
    """
    Each way an outbound connection fails gets its own reply code, then a
    close, and nothing is relayed.
    """

    def failWith(self, exception: BaseException) -> HalfCloseTransport:
        protocol, transport, dialler = self.openSOCKS5(self, CONNECT_IPV4 + b"early")
        dialler.attempts[0].fail(exception)
        self.assertTrue(transport.closing)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        return transport

    def test_refused(self) -> None:
        """
        Connection refused: 0x05.
        """
        transport = self.failWith(error.ConnectionRefusedError())
        self.assertEqual(transport.value(), failure5(0x05))

    def test_nameNotFound(self) -> None:
        """
        A name that does not resolve: 0x04.
        """
        transport = self.failWith(error.DNSLookupError("no such name"))
        self.assertEqual(transport.value(), failure5(0x04))

    def test_hostUnreachable(self) -> None:
        """
        EHOSTUNREACH: 0x04.
        """
        transport = self.failWith(error.ConnectError(errno.EHOSTUNREACH, "x"))
        self.assertEqual(transport.value(), failure5(0x04))

    def test_networkUnreachable(self) -> None:
        """
        ENETUNREACH (Twisted's NoRouteError): 0x03.
        """
        transport = self.failWith(error.NoRouteError(errno.ENETUNREACH, "x"))
        self.assertEqual(transport.value(), failure5(0x03))

    def test_timedOut(self) -> None:
        """
        A TCP connect timeout: 0x06.
        """
        transport = self.failWith(error.TCPTimedOutError())
        self.assertEqual(transport.value(), failure5(0x06))

    def test_somethingElse(self) -> None:
        """
        Anything else: 0x01, general failure.
        """
        transport = self.failWith(RuntimeError("surprise"))
        self.assertEqual(transport.value(), failure5(0x01))

    def test_connectTimeout(self) -> None:
        """
        When the dialler does not finish within --connect-timeout, the attempt
        is cancelled and the client gets 0x06.
        """
        _, transport, dialler = self.openSOCKS5(self, CONNECT_IPV4, connectTimeout=5.0)
        self.reactor.advance(4.9)
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(0.2)
        self.assertTrue(dialler.attempts[0].cancelled)
        self.assertEqual(transport.value(), failure5(0x06))
        self.assertTrue(transport.closing)

    def test_clientLeavesWhileConnecting(self) -> None:
        """
        A client that disconnects while the server dials cancels the attempt;
        nothing is written.
        """
        protocol, transport, dialler = self.openSOCKS5(self, CONNECT_IPV4)
        protocol.connectionLost(Failure(error.ConnectionLost()))
        self.assertTrue(dialler.attempts[0].cancelled)
        self.assertEqual(transport.value(), b"")


class BadInputTests(SynchronousTestCase):
    """
    Malformed or unsupported requests get the reply the protocol allows, and a
    close with a logged reason.
    """

    def run5(self, data: bytes) -> tuple[HalfCloseTransport, LogCapture]:
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(data)
        self.assertEqual(dialler.attempts, [])
        self.assertTrue(transport.closing)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        return transport, log

    def test_httpToSOCKSPort(self) -> None:
        """
        HTTP sent to the SOCKS port (a client told to use it as an HTTP
        proxy): answered 501 saying this is a SOCKS proxy, then closed, with
        the reason logged.
        """
        transport, log = self.run5(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.0 501 Not Implemented\r\n")
        )
        self.assertIn(b"This is a SOCKS proxy", transport.value())
        self.assertIn("not a SOCKS request", log.text())

    def test_noMethods(self) -> None:
        """
        NMETHODS=0: 05 FF.
        """
        transport, _ = self.run5(bytes.fromhex("05 00"))
        self.assertEqual(transport.value(), bytes.fromhex("05 ff"))

    def test_noAcceptableMethod(self) -> None:
        """
        Without --auth, a client offering only username/password gets 05 FF.
        """
        transport, log = self.run5(bytes.fromhex("05 01 02"))
        self.assertEqual(transport.value(), bytes.fromhex("05 ff"))
        self.assertIn("no acceptable method", log.text())

    def test_nonZeroReserved(self) -> None:
        """
        A non-zero RSV byte: 0x01.
        """
        transport, _ = self.run5(
            GREETING_NO_AUTH + bytes.fromhex("05 01 01 01 7f000001 0050")
        )
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(0x01))

    def test_unknownCommand(self) -> None:
        """
        CMD 0x09: 0x07.
        """
        transport, _ = self.run5(
            GREETING_NO_AUTH + bytes.fromhex("05 09 00 01 7f000001 0050")
        )
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(0x07))

    def test_unknownAddressType(self) -> None:
        """
        ATYP 0x02: 0x08.
        """
        transport, _ = self.run5(
            GREETING_NO_AUTH + bytes.fromhex("05 01 00 02 7f000001 0050")
        )
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(0x08))

    def test_emptyDomain(self) -> None:
        """
        A zero-length domain: 0x01.
        """
        transport, _ = self.run5(
            GREETING_NO_AUTH + bytes.fromhex("05 01 00 03 00 0050")
        )
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(0x01))

    def test_socks4UnknownCommand(self) -> None:
        """
        SOCKS4 CD 3: 91.
        """
        transport, _ = self.run5(bytes.fromhex("04 03 0050 7f000001 00"))
        self.assertEqual(transport.value(), SOCKS4_REJECTED)

    def test_socks4OverlongUserID(self) -> None:
        """
        A SOCKS4 user ID past 255 bytes is refused (91) without waiting for
        its end.
        """
        transport, _ = self.run5(bytes.fromhex("04 01 0050 7f000001") + b"u" * 300)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)

    def test_lingerAfterRefusal(self) -> None:
        """
        After a failure reply the server shuts only its write side, discards
        what the client still sends (closing with unread input would reset
        the connection and could lose the reply), and closes after
        LINGER_TIMEOUT.
        """
        factory, reactor, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        dialler.attempts[0].fail(error.ConnectionRefusedError())
        self.assertTrue(transport.writeShut)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"more pipelined bytes")
        self.assertEqual(transport.value(), CHOSE_NO_AUTH + failure5(0x05))
        reactor.advance(LINGER_TIMEOUT)
        self.assertTrue(transport.disconnecting)

    def test_lingerEndsWithClientEOF(self) -> None:
        """
        A client that closes after reading the failure reply is closed at
        once, and no timer is left.
        """
        factory, reactor, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 00"))
        protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_eofDuringHandshake(self) -> None:
        """
        A client that half-closes before finishing its request is closed.
        """
        log = LogCapture(self)
        factory, _, _ = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01"))
        protocol.readConnectionLost()
        self.assertTrue(transport.closing)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertIn("during the handshake", log.text())


class SOCKS4Tests(SynchronousTestCase):
    """
    SOCKS4 and SOCKS4a CONNECT.
    """

    def test_socks4Granted(self) -> None:
        """
        SOCKS4 CONNECT is dialled as given and granted with 90.
        """
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(SOCKS4_CONNECT)
        [attempt] = dialler.attempts
        self.assertEqual((attempt.host, attempt.port), ("127.0.0.1", 80))
        attempt.succeed()
        self.assertEqual(transport.value(), SOCKS4_GRANTED_BND)

    def test_socks4aName(self) -> None:
        """
        SOCKS4a (DSTIP 0.0.0.1): the name after the user ID is dialled.
        """
        factory, _, dialler = makeFactory()
        protocol, _ = connectClient(factory)
        protocol.dataReceived(SOCKS4A_CONNECT + b"early")
        self.assertEqual(
            [(a.host, a.port) for a in dialler.attempts], [("example.com", 80)]
        )
        _, targetTransport = dialler.attempts[0].succeed()
        self.assertEqual(targetTransport.value(), b"early")

    def test_socks4Failure(self) -> None:
        """
        Every failure is 91 for SOCKS4.
        """
        factory, _, dialler = makeFactory()
        protocol, transport = connectClient(factory)
        protocol.dataReceived(SOCKS4_CONNECT)
        dialler.attempts[0].fail(error.ConnectionRefusedError())
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertTrue(transport.closing)


class AuthenticationTests(SynchronousTestCase):
    """
    RFC 1929 through twisted.cred.
    """

    users = {b"alice": b"s3cret-pw"}
    greeting = bytes.fromhex("05 02 00 02")
    # RFC 1929: VER 01, ULEN 5 "alice", PLEN 9 "s3cret-pw"
    goodCredentials = bytes.fromhex("01 05 616c696365 09 73336372 65742d7077")
    # same user, password "wrong"
    badCredentials = bytes.fromhex("01 05 616c696365 05 77726f6e67")

    def test_usernamePasswordChosen(self) -> None:
        """
        With --auth, username/password is chosen even when no-auth is offered
        first; good credentials get 01 00 and the request proceeds.
        """
        factory, _, dialler = makeFactory(users=self.users)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(self.greeting)
        self.assertEqual(transport.value(), bytes.fromhex("05 02"))
        protocol.dataReceived(self.goodCredentials + CONNECT_IPV4)
        self.assertEqual(transport.value(), bytes.fromhex("05 02 01 00"))
        self.assertEqual(len(dialler.attempts), 1)
        self.assertEqual(protocol.user, b"alice")

    def test_badPassword(self) -> None:
        """
        A wrong password gets 01 01 and a close; the password is in no log
        line.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory(users=self.users)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(self.greeting + self.badCredentials + CONNECT_IPV4)
        self.assertEqual(transport.value(), bytes.fromhex("05 02 01 01"))
        self.assertTrue(transport.closing)
        self.assertEqual(dialler.attempts, [])
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertIn("authentication failed", log.text())
        self.assertNotIn("wrong", log.text())

    def test_goodPasswordNeverLogged(self) -> None:
        """
        A good password is in no log line either.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory(users=self.users)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(self.greeting + self.goodCredentials + CONNECT_IPV4)
        target, _ = dialler.attempts[0].succeed()
        protocol.connectionLost(Failure(error.ConnectionDone()))
        target.connectionLost(Failure(error.ConnectionDone()))
        self.assertIn("alice", log.text())
        self.assertNotIn("s3cret", log.text())

    def test_noAuthOnlyRefused(self) -> None:
        """
        With --auth, a client offering only no-auth gets 05 FF.
        """
        factory, _, _ = makeFactory(users=self.users)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH)
        self.assertEqual(transport.value(), bytes.fromhex("05 ff"))
        self.assertTrue(transport.closing)

    def test_socks4RefusedWithAuth(self) -> None:
        """
        With --auth, SOCKS4 (no password) is refused with 91.
        """
        factory, _, dialler = makeFactory(users=self.users)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(SOCKS4_CONNECT)
        self.assertEqual(transport.value(), SOCKS4_REJECTED)
        self.assertEqual(dialler.attempts, [])

    def test_socks4AllowedWithAuthWhenAsked(self) -> None:
        """
        --allow-socks4-with-auth lets SOCKS4 through.
        """
        factory, _, dialler = makeFactory(users=self.users, allowSOCKS4WithAuth=True)
        protocol, _ = connectClient(factory)
        protocol.dataReceived(SOCKS4_CONNECT)
        self.assertEqual(len(dialler.attempts), 1)


class DeadlineTests(SynchronousTestCase):
    """
    The handshake deadline and the idle timeout.
    """

    def test_handshakeDeadlineIsTotal(self) -> None:
        """
        A client trickling bytes is closed when the deadline passes, counted
        from the connection, not from its last byte.
        """
        factory, reactor, _ = makeFactory(handshakeTimeout=30.0)
        protocol, transport = connectClient(factory)
        reactor.advance(15)
        protocol.dataReceived(b"\x05")
        reactor.advance(14.9)
        protocol.dataReceived(b"\x01")
        self.assertFalse(transport.closing)
        reactor.advance(0.2)
        self.assertTrue(transport.closing)
        self.assertEqual(transport.value(), b"")

    def test_deadlineCancelledOnceRelaying(self) -> None:
        """
        A session that relays is not closed by the handshake deadline, and
        leaves no timer behind.
        """
        factory, reactor, dialler = makeFactory(handshakeTimeout=30.0)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        dialler.attempts[0].succeed()
        self.assertEqual(reactor.getDelayedCalls(), [])
        reactor.advance(60)
        self.assertFalse(transport.closing)

    def test_deadlineDuringAuthentication(self) -> None:
        """
        The deadline also bounds a credential check that never answers.
        """
        factory, reactor, _ = makeFactory(users={b"a": b"b"}, handshakeTimeout=10.0)
        neverAnswers = factory.settings.portal
        assert neverAnswers is not None
        from twisted.internet.defer import Deferred

        neverAnswers.login = lambda *a: Deferred()  # type: ignore[method-assign]
        protocol, transport = connectClient(factory)
        protocol.dataReceived(bytes.fromhex("05 01 02 01 01 61 01 62"))
        reactor.advance(10.1)
        self.assertTrue(transport.closing)

    def test_idleTimeout(self) -> None:
        """
        An established session with no traffic either way for --idle-timeout
        is closed; traffic keeps it open.
        """
        factory, reactor, dialler = makeFactory(idleTimeout=100.0)
        protocol, transport = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        target, _ = dialler.attempts[0].succeed()
        for _ in range(8):
            reactor.pump([1.0] * 50)
            target.dataReceived(b"x")
        self.assertFalse(transport.closing)
        reactor.pump([1.0] * 99)
        self.assertFalse(transport.closing)
        # The check runs every quarter of the timeout: closed within 1.25x.
        reactor.pump([1.0] * 26)
        self.assertTrue(transport.closing)


class SessionLimitTests(SynchronousTestCase):
    """
    --max-sessions.
    """

    def test_limit(self) -> None:
        """
        Connections beyond the limit are not served (no protocol: Twisted
        closes them at once); once a session ends, a new one is served.
        """
        factory, _, _ = makeFactory(maxSessions=2)
        first, _ = connectClient(factory)
        connectClient(factory)
        self.assertIsNone(factory.buildProtocol(None))
        first.connectionLost(Failure(error.ConnectionDone()))
        self.assertIsNotNone(factory.buildProtocol(None))


class SessionLogTests(SynchronousTestCase):
    """
    One structured event per session.
    """

    def test_oneEventWithTheFacts(self) -> None:
        """
        A relayed session logs client, version, command, target, reply and
        the bytes each way once both sides have ended.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_NAME + b"12345")
        target, _ = dialler.attempts[0].succeed()
        target.dataReceived(b"abc")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(log.sessionEvents(), [])
        target.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertEqual(event["client"], "127.0.0.1:50000")
        self.assertEqual(event["version"], "5")
        self.assertEqual(event["command"], "CONNECT")
        self.assertEqual(event["target"], "example.com:80")
        self.assertEqual(event["reply"], 0)
        self.assertEqual((event["bytesFromClient"], event["bytesToClient"]), (5, 3))

    def test_failedSessionLogged(self) -> None:
        """
        A refused session logs its reply code and reason.
        """
        log = LogCapture(self)
        factory, _, dialler = makeFactory()
        protocol, _ = connectClient(factory)
        protocol.dataReceived(GREETING_NO_AUTH + CONNECT_IPV4)
        dialler.attempts[0].fail(error.ConnectionRefusedError())
        protocol.connectionLost(Failure(error.ConnectionDone()))
        [event] = log.sessionEvents()
        self.assertEqual(event["reply"], 5)
        self.assertIn("connection refused", event["reason"])
