# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
The BIND clients (L{SOCKS5BindClient}, L{SOCKS4BindClient}).

Unit tests drive scripted proxies on L{StringTransport}: the bytes sent
(hex written from RFC 1928 and the SOCKS4 / SOCKS4a documents), both
replies, the unspecified-address convention, failure replies, a proxy that
closes between the replies, replies split byte by byte or coalesced with the
peer's first bytes, cancellation and timeouts at every stage.

Loopback tests run against our own server and against Dante: a peer
connects to the announced address and bytes flow both ways.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import error
from twisted.internet.address import HostnameAddress, IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from socks_twisted import errors
from socks_twisted.auth import portalFor
from socks_twisted.client import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    PendingBind,
    SOCKS4BindClient,
    SOCKS5BindClient,
    SOCKSTunnelTransport,
)
from tests.interop._thirdparty import ThirdPartyServer, startDante

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
    FakeResolver,
    ProxyExchange,
    RecordingFactory,
    RecordingProtocol,
    TCPStringTransport,
    h,
    onlyResult,
    overFakeProxy,
    valueOf,
)
from ._loopback import (
    LOOPBACK,
    Collector,
    asyncTest,
    reactor,
    startOurServer,
    withTimeout,
)

# RFC 1928 section 4, CMD 2 (BIND): the peer expected, 192.0.2.1:21.
BIND_IPV4 = h("05 02 00 01 c0 00 02 01 00 15")
BIND_ANY = h("05 02 00 01 00 00 00 00 00 00")
BIND_NAME = h("05 02 00 03 0b") + b"ftp.example" + h("00 15")
BIND_IPV6 = h("05 02 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 00 15")
# RFC 1928 section 6: the first reply names where the proxy listens
# (198.51.100.7:4000), the second the peer that connected (192.0.2.1:20).
FIRST_REPLY = h("05 00 00 01 c6 33 64 07 0f a0")
FIRST_REPLY_ANY = h("05 00 00 01 00 00 00 00 0f a0")
FIRST_REPLY_ANY6 = h("05 00 00 04 " + "00 " * 16 + "0f a0")
FIRST_REPLY_NAME = h("05 00 00 03 0a") + b"proxy.test" + h("0f a0")
SECOND_REPLY = h("05 00 00 01 c0 00 02 01 00 14")
SECOND_REPLY_IPV6 = h(
    "05 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02 00 14"
)
NOT_ALLOWED = h("05 02 00 01 00 00 00 00 00 00")
GENERAL_FAILURE = h("05 01 00 01 00 00 00 00 00 00")
# SOCKS4: VN 4, CD 2 (BIND), DSTPORT, DSTIP, USERID, NUL; SOCKS4a puts
# 0.0.0.1 in DSTIP and the name after the USERID.
SOCKS4_BIND = h("04 02 00 15 c0 00 02 01") + b"fred" + h("00")
SOCKS4_BIND_NO_USER = h("04 02 00 15 c0 00 02 01 00")
SOCKS4_BIND_ANY = h("04 02 00 00 00 00 00 00") + b"fred" + h("00")
SOCKS4_BIND_ANY_NO_USER = h("04 02 00 00 00 00 00 00 00")
SOCKS4A_BIND = (
    h("04 02 00 15 00 00 00 01") + b"fred" + h("00") + b"ftp.example" + h("00")
)
SOCKS4A_BIND_NO_USER = h("04 02 00 15 00 00 00 01 00") + b"ftp.example" + h("00")
# SOCKS4 replies: VN 0, CD, DSTPORT, DSTIP.
SOCKS4_FIRST = h("00 5a 0f a0 c6 33 64 07")
SOCKS4_FIRST_ANY = h("00 5a 0f a0 00 00 00 00")
SOCKS4_SECOND = h("00 5a 00 14 c0 00 02 01")
SOCKS4_REJECTED = h("00 5b 00 00 00 00 00 00")


def bind5(
    host: str = "192.0.2.1", port: int = 21, **kwargs: Any
) -> tuple[SOCKS5BindClient, FakeProxyEndpoint, MemoryReactorClock]:
    """
    A SOCKS5 BIND client over a fake proxy endpoint and a memory reactor.
    """
    return overFakeProxy(SOCKS5BindClient, host, port, **kwargs)


def bind4(
    host: str = "192.0.2.1", port: int = 21, **kwargs: Any
) -> tuple[SOCKS4BindClient, FakeProxyEndpoint, MemoryReactorClock]:
    """
    A SOCKS4 BIND client over a fake proxy endpoint and a memory reactor.
    """
    return overFakeProxy(SOCKS4BindClient, host, port, **kwargs)


class BindExchange(ProxyExchange):
    """
    One C{bind()} through a fake proxy, driven by the test.

    @ivar ready: What C{bind()} returned.
    @ivar readyResults: What it fired with (a L{PendingBind} or a failure).
    @ivar acceptedResults: What C{accepted()} fired with.
    """

    def __init__(
        self,
        client: SOCKS5BindClient | SOCKS4BindClient,
        proxy: FakeProxyEndpoint,
        factory: RecordingFactory | None = None,
    ) -> None:
        super().__init__(proxy)
        self.factory = factory if factory is not None else RecordingFactory()
        self.readyResults: list[object] = []
        self.acceptedResults: list[object] = []
        self.ready = client.bind(self.factory)
        self.ready.addBoth(self._readyFired)

    def _readyFired(self, result: object) -> object:
        self.readyResults.append(result)
        if isinstance(result, PendingBind):
            result.accepted().addBoth(self._acceptedFired)
            return result
        return None

    def _acceptedFired(self, result: object) -> object:
        self.acceptedResults.append(result)
        return None if isinstance(result, Failure) else result

    def pending(self) -> PendingBind:
        """
        The L{PendingBind} the first reply gave.
        """
        return onlyResult(self.readyResults, PendingBind)

    def readyFailure(self) -> Failure:
        """
        How C{bind()} failed.
        """
        return onlyResult(self.readyResults, Failure)

    def app(self) -> RecordingProtocol:
        """
        The application protocol connected to the peer.
        """
        return onlyResult(self.acceptedResults, RecordingProtocol)

    def acceptedFailure(self) -> Failure:
        """
        How C{accepted()} failed.
        """
        return onlyResult(self.acceptedResults, Failure)


class BindBytesTests(SynchronousTestCase):
    """
    What the BIND clients send, and what the two replies give.
    """

    def test_socks5(self) -> None:
        """
        SOCKS5 BIND is CMD 2 with the expected peer; the first reply fires
        C{bind()} with where the proxy listens, the second connects the
        application to the peer it names, and C{buildProtocol} gets that
        peer.
        """
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), GREETING_NOAUTH)
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(exchange.sent(), BIND_IPV4)
        self.assertEqual(exchange.readyResults, [])
        exchange.receive(FIRST_REPLY)
        pending = exchange.pending()
        listening = IPv4Address("TCP", "198.51.100.7", 4000)
        self.assertEqual(pending.address, listening)
        self.assertEqual(pending.proxyBoundAddress, listening)
        self.assertEqual(pending.proxyAddress, PROXY_ADDRESS)
        self.assertEqual(exchange.acceptedResults, [])
        self.assertEqual(exchange.factory.built, [])
        exchange.receive(SECOND_REPLY)
        app = exchange.app()
        peer = IPv4Address("TCP", "192.0.2.1", 20)
        self.assertEqual(exchange.factory.addresses, [peer])
        transport = app.transport
        assert isinstance(transport, SOCKSTunnelTransport)
        self.assertEqual(transport.getPeer(), peer)
        self.assertEqual(transport.proxyBoundAddress, listening)
        self.assertEqual(app.events, ["connectionMade"])
        transport.write(b"to the peer")
        self.assertEqual(exchange.sent(), b"to the peer")
        exchange.receive(b"from the peer")
        self.assertEqual(app.received, [b"from the peer"])
        self.assertFalse(exchange.transport.disconnecting)

    def test_socks5UsernamePassword(self) -> None:
        """
        The same authentication options as the CONNECT endpoint: RFC 1929
        before the BIND request.
        """
        client, proxy, _ = bind5(credentials=("alice", PASSWORD))
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_USERPASS + AUTH_OK)
        self.assertEqual(
            exchange.sent(), GREETING_NOAUTH_USERPASS + AUTH_ALICE + BIND_IPV4
        )
        exchange.receive(FIRST_REPLY + SECOND_REPLY)
        exchange.app()

    def test_socks5AddressTypes(self) -> None:
        """
        Any peer (0.0.0.0:0), a name (ATYP 3) and an IPv6 literal (ATYP 4,
        all 16 bytes) are sent as such; an IPv6 peer is reported as one.
        """
        for host, port, request in [
            ("0.0.0.0", 0, BIND_ANY),
            ("ftp.example", 21, BIND_NAME),
            ("2001:db8::1", 21, BIND_IPV6),
        ]:
            client, proxy, _ = bind5(host, port)
            exchange = BindExchange(client, proxy)
            exchange.connectProxy()
            exchange.receive(SELECT_NOAUTH)
            self.assertEqual(exchange.sent(), GREETING_NOAUTH + request)
        exchange.receive(FIRST_REPLY + SECOND_REPLY_IPV6)
        transport = exchange.app().transport
        assert transport is not None
        self.assertEqual(transport.getPeer(), IPv6Address("TCP", "2001:db8::2", 20))

    def test_socks4(self) -> None:
        """
        SOCKS4 BIND is CD 2 with DSTIP, DSTPORT and USERID; SOCKS4a puts a
        name after 0.0.0.1; "any peer" is DSTIP 0.0.0.0, plain SOCKS4.  The
        replies work as for SOCKS5.
        """
        for host, port, request in [
            ("192.0.2.1", 21, SOCKS4_BIND),
            ("ftp.example", 21, SOCKS4A_BIND),
            ("0.0.0.0", 0, SOCKS4_BIND_ANY),
        ]:
            client, proxy, _ = bind4(host, port, userID="fred")
            exchange = BindExchange(client, proxy)
            exchange.connectProxy()
            self.assertEqual(exchange.sent(), request)
        exchange.receive(SOCKS4_FIRST)
        self.assertEqual(
            exchange.pending().address, IPv4Address("TCP", "198.51.100.7", 4000)
        )
        exchange.receive(SOCKS4_SECOND)
        transport = exchange.app().transport
        assert transport is not None
        self.assertEqual(transport.getPeer(), IPv4Address("TCP", "192.0.2.1", 20))

    def test_socks4aVectors(self) -> None:
        """
        The SOCKS4a and "any" requests without a user ID, byte for byte.
        """
        for host, port, request in [
            ("ftp.example", 21, SOCKS4A_BIND_NO_USER),
            ("0.0.0.0", 0, SOCKS4_BIND_ANY_NO_USER),
        ]:
            client, proxy, _ = bind4(host, port)
            exchange = BindExchange(client, proxy)
            exchange.connectProxy()
            self.assertEqual(exchange.sent(), request)

    def test_resolveLocally(self) -> None:
        """
        With C{resolveLocally}, a SOCKS4 BIND for a name is sent as plain
        SOCKS4 with the resolved IPv4 address.
        """
        resolver = FakeResolver()
        proxy = FakeProxyEndpoint()
        clock = MemoryReactorClock()
        clock.installNameResolver(resolver)
        client = SOCKS4BindClient(
            "ftp.example", 21, proxy, resolveLocally=True, reactor=clock
        )
        exchange = BindExchange(client, proxy)
        self.assertEqual(resolver.queries[0][1], "ftp.example")
        resolver.answer(IPv4Address("TCP", "192.0.2.1", 0))
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), SOCKS4_BIND_NO_USER)

    def test_refusedBeforeSending(self) -> None:
        """
        What cannot be sent is refused when the client is made: SOCKS4 with
        an IPv6 literal, a port out of range, a bad accept timeout, the
        CONNECT endpoints' method and credential mistakes.  Port 0 is
        allowed (any peer port).
        """
        proxy = FakeProxyEndpoint()
        self.assertRaises(ValueError, SOCKS4BindClient, "2001:db8::1", 0, proxy)
        self.assertRaises(ValueError, SOCKS5BindClient, "192.0.2.1", -1, proxy)
        self.assertRaises(ValueError, SOCKS5BindClient, "192.0.2.1", 65536, proxy)
        self.assertRaises(
            ValueError, SOCKS5BindClient, "192.0.2.1", 0, proxy, acceptTimeout=0
        )
        self.assertRaises(
            ValueError, SOCKS5BindClient, "192.0.2.1", 0, proxy, methods=[2]
        )
        self.assertRaises(
            ValueError, SOCKS4BindClient, "192.0.2.1", 0, proxy, userID=b"a\x00"
        )
        SOCKS5BindClient("192.0.2.1", 0, proxy)
        SOCKS4BindClient("0.0.0.0", 0, proxy)


class AnnouncedAddressTests(SynchronousTestCase):
    """
    A first reply naming 0.0.0.0 or :: means "the proxy's own address".
    """

    def check(self, script: bytes, expected: Any, socks4: bool = False) -> PendingBind:
        """
        Run a BIND whose first reply is C{script} and check the address
        announced.
        """
        client, proxy, _ = bind4() if socks4 else bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(script)
        pending = exchange.pending()
        self.assertEqual(pending.address, expected)
        return pending

    def test_unspecifiedIPv4(self) -> None:
        """
        SOCKS5 BND.ADDR 0.0.0.0 becomes the proxy's address, with BND.PORT;
        C{proxyBoundAddress} keeps what was sent.
        """
        pending = self.check(
            SELECT_NOAUTH + FIRST_REPLY_ANY, IPv4Address("TCP", "127.0.0.1", 4000)
        )
        self.assertEqual(pending.proxyBoundAddress, IPv4Address("TCP", "0.0.0.0", 4000))

    def test_unspecifiedIPv6(self) -> None:
        """
        So does ::.
        """
        pending = self.check(
            SELECT_NOAUTH + FIRST_REPLY_ANY6, IPv4Address("TCP", "127.0.0.1", 4000)
        )
        self.assertEqual(pending.proxyBoundAddress, IPv6Address("TCP", "::", 4000))

    def test_socks4Unspecified(self) -> None:
        """
        As the SOCKS4 text says: DSTIP 0 in the reply is replaced by the
        proxy's address.
        """
        self.check(SOCKS4_FIRST_ANY, IPv4Address("TCP", "127.0.0.1", 4000), True)

    def test_name(self) -> None:
        """
        A name in the reply is kept as a L{HostnameAddress}.
        """
        self.check(
            SELECT_NOAUTH + FIRST_REPLY_NAME, HostnameAddress(b"proxy.test", 4000)
        )

    def test_proxyBehindName(self) -> None:
        """
        When the connection to the proxy reports a L{HostnameAddress} (a
        proxy reached through another proxy), that name is announced.
        """
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)
        exchange.transport = TCPStringTransport()
        exchange.transport.peerAddr = HostnameAddress(b"proxy.test", 1080)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY_ANY)
        self.assertEqual(
            exchange.pending().address, HostnameAddress(b"proxy.test", 4000)
        )


class FailureTests(SynchronousTestCase):
    """
    Refusals at either reply, protocol errors, and a proxy that closes.
    """

    def test_firstReplyRefused(self) -> None:
        """
        A failure first reply fails C{bind()} with the reply's error and
        closes the connection to the proxy.
        """
        for script, cls, socks4 in [
            (SELECT_NOAUTH + GENERAL_FAILURE, errors.GeneralServerFailureError, False),
            (
                SELECT_NOAUTH + h("05 07 00 01 00 00 00 00 00 00"),
                errors.CommandNotSupportedError,
                False,
            ),
            (SOCKS4_REJECTED, errors.SOCKS4RejectedError, True),
        ]:
            client, proxy, _ = bind4() if socks4 else bind5()
            exchange = BindExchange(client, proxy)
            exchange.connectProxy()
            exchange.receive(script)
            exchange.readyFailure().trap(cls)
            self.assertTrue(exchange.transport.disconnecting)
            self.assertEqual(exchange.factory.built, [])

    def test_secondReplyRefused(self) -> None:
        """
        A failure second reply (the peer came from the wrong address: SOCKS5
        reply 2, SOCKS4 91) fails C{accepted()}; no protocol is built.
        """
        for script, second, cls, socks4 in [
            (
                SELECT_NOAUTH + FIRST_REPLY,
                NOT_ALLOWED,
                errors.ConnectionNotAllowedError,
                False,
            ),
            (SOCKS4_FIRST, SOCKS4_REJECTED, errors.SOCKS4RejectedError, True),
        ]:
            client, proxy, _ = bind4() if socks4 else bind5()
            exchange = BindExchange(client, proxy)
            exchange.connectProxy()
            exchange.receive(script)
            exchange.pending()
            self.assertEqual(exchange.acceptedResults, [])
            exchange.receive(second)
            failure = exchange.acceptedFailure()
            failure.trap(cls)
            self.assertEqual(valueOf(failure, errors.SOCKSReplyError).code, second[1])
            self.assertTrue(exchange.transport.disconnecting)
            self.assertEqual(exchange.factory.built, [])

    def test_closedBetweenReplies(self) -> None:
        """
        A proxy that closes the connection after the first reply fails
        C{accepted()} with L{errors.SOCKSProtocolError} saying what we were
        waiting for.
        """
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY + SECOND_REPLY[:4])
        exchange.handshake.connectionLost(Failure(error.ConnectionDone()))
        failure = exchange.acceptedFailure()
        failure.trap(errors.SOCKSProtocolError)
        self.assertIn("second BIND reply", str(failure.value))
        self.assertEqual(exchange.factory.built, [])

    def test_endOfFileBetweenReplies(self) -> None:
        """
        End-of-file (a half-close) after the first reply does the same, and
        aborts the connection.
        """
        client, proxy, _ = bind4()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SOCKS4_FIRST)
        exchange.handshake.readConnectionLost()
        exchange.acceptedFailure().trap(errors.SOCKSProtocolError)
        self.assertTrue(exchange.transport.disconnected)

    def test_malformedSecondReply(self) -> None:
        """
        A second reply with a bad version is a protocol error; the connection
        is aborted.
        """
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY + h("04 00 00 01"))
        failure = exchange.acceptedFailure()
        failure.trap(errors.SOCKSProtocolError)
        self.assertIn("second BIND reply", str(failure.value))
        self.assertTrue(exchange.transport.disconnected)

    def test_proxyUnreachable(self) -> None:
        """
        When the proxy cannot be reached, C{bind()} fails with the error of
        the connection to it.
        """
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)
        proxy.attempts[0][1].errback(Failure(error.ConnectionRefusedError()))
        exchange.readyFailure().trap(error.ConnectionRefusedError)


class SplitAndCoalescedTests(SynchronousTestCase):
    """
    However the proxy's bytes are cut, the outcome is the same; the peer's
    bytes that come with the second reply reach the application at once.
    """

    SCRIPT = (
        SELECT_USERPASS + AUTH_OK + FIRST_REPLY + SECOND_REPLY_IPV6 + b"peer says hi"
    )

    def runScript(self, chunks: list[bytes]) -> BindExchange:
        """
        Run an authenticated SOCKS5 BIND, feeding C{chunks}.
        """
        client, proxy, _ = bind5(credentials=("alice", PASSWORD))
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        for chunk in chunks:
            exchange.receive(chunk)
        self.assertEqual(
            exchange.sent(), GREETING_NOAUTH_USERPASS + AUTH_ALICE + BIND_IPV4
        )
        return exchange

    def test_byteByByte(self) -> None:
        """
        Every byte on its own gives the same addresses and bytes as whole
        messages.
        """
        exchange = self.runScript([bytes([b]) for b in self.SCRIPT])
        self.assertEqual(
            exchange.pending().address, IPv4Address("TCP", "198.51.100.7", 4000)
        )
        app = exchange.app()
        self.assertEqual(b"".join(app.received), b"peer says hi")
        assert app.transport is not None
        self.assertEqual(app.transport.getPeer(), IPv6Address("TCP", "2001:db8::2", 20))

    @given(st.lists(st.integers(min_value=0, max_value=70), max_size=12))
    def test_anySplit(self, cuts: list[int]) -> None:
        """
        Cutting the script anywhere gives the same result.
        """
        points = sorted({c for c in cuts if 0 < c < len(self.SCRIPT)})
        chunks = [
            self.SCRIPT[a:b]
            for a, b in zip([0, *points], [*points, len(self.SCRIPT)], strict=True)
        ]
        exchange = self.runScript(chunks)
        self.assertEqual(
            exchange.pending().address, IPv4Address("TCP", "198.51.100.7", 4000)
        )
        self.assertEqual(b"".join(exchange.app().received), b"peer says hi")

    def test_coalesced(self) -> None:
        """
        Both replies and the peer's first bytes in one segment: C{bind()}
        fires, then C{accepted()}, then the application gets the bytes in one
        call.
        """
        order: list[str] = []
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)

        def ready(pending: PendingBind) -> PendingBind:
            order.append("ready")

            def accepted(app: IProtocol) -> IProtocol:
                assert isinstance(app, RecordingProtocol)
                order.append(f"accepted with {len(app.received)} chunks")
                return app

            pending.accepted().addCallback(accepted)
            return pending

        exchange.ready.addCallback(ready)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY + SECOND_REPLY + b"220 ready\r\n")
        app = exchange.app()
        self.assertEqual(app.received, [b"220 ready\r\n"])
        self.assertEqual(app.events, ["connectionMade", "dataReceived"])
        self.assertEqual(order, ["ready", "accepted with 0 chunks"])

    def test_socks4Coalesced(self) -> None:
        """
        The same for SOCKS4: bytes after the second 8-byte reply are the
        application's.
        """
        client, proxy, _ = bind4()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SOCKS4_FIRST + SOCKS4_SECOND + b"\x00\x5a data")
        self.assertEqual(exchange.app().received, [b"\x00\x5a data"])


class CancellationTests(SynchronousTestCase):
    """
    Cancelling at any stage fails with L{error.ConnectingCancelledError},
    aborts the connection to the proxy, and leaves no timer.
    """

    def assertCancelled(
        self, exchange: BindExchange, clock: MemoryReactorClock, failure: Failure
    ) -> None:
        """
        Check the outcome of a cancellation, and that late bytes and a late
        close change nothing.
        """
        failure.trap(error.ConnectingCancelledError)
        self.assertEqual(
            valueOf(failure, error.ConnectingCancelledError).address,
            IPv4Address("TCP", "192.0.2.1", 21),
        )
        self.assertEqual(clock.getDelayedCalls(), [])
        if exchange.handshake is not None:
            self.assertTrue(exchange.transport.disconnected)
            exchange.receive(FIRST_REPLY + SECOND_REPLY)
            exchange.handshake.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(exchange.factory.built, [])

    def test_beforeProxyConnected(self) -> None:
        """
        While connecting to the proxy: that attempt is cancelled.
        """
        client, proxy, clock = bind5()
        exchange = BindExchange(client, proxy)
        exchange.ready.cancel()
        self.assertCancelled(exchange, clock, exchange.readyFailure())
        self.assertEqual(proxy.cancelled, 1)

    def test_duringNegotiation(self) -> None:
        """
        While waiting for the method selection, or for the RFC 1929 status.
        """
        for script in [b"", SELECT_USERPASS]:
            client, proxy, clock = bind5(credentials=("alice", PASSWORD))
            exchange = BindExchange(client, proxy)
            exchange.connectProxy()
            exchange.receive(script)
            exchange.ready.cancel()
            self.assertCancelled(exchange, clock, exchange.readyFailure())

    def test_waitingForFirstReply(self) -> None:
        """
        After the request, half-way through the first reply (SOCKS5), or
        before it (SOCKS4).
        """
        client, proxy, clock = bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY[:6])
        exchange.ready.cancel()
        self.assertCancelled(exchange, clock, exchange.readyFailure())
        client4, proxy4, clock4 = bind4()
        exchange = BindExchange(client4, proxy4)
        exchange.connectProxy()
        exchange.ready.cancel()
        self.assertCancelled(exchange, clock4, exchange.readyFailure())

    def test_waitingForPeer(self) -> None:
        """
        After the first reply, cancelling C{accepted()} aborts the
        connection; cancelling the already fired C{bind()} result does
        nothing.
        """
        client, proxy, clock = bind5(acceptTimeout=30)
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY + SECOND_REPLY[:3])
        exchange.ready.cancel()
        self.assertFalse(exchange.transport.disconnecting)
        exchange.pending().accepted().cancel()
        self.assertCancelled(exchange, clock, exchange.acceptedFailure())

    def test_inReadyCallback(self) -> None:
        """
        Cancelling C{accepted()} from the callback of C{bind()}, while the
        second reply and data wait in the same segment, stops there: no
        protocol is built and nothing more is read.
        """
        client, proxy, clock = bind5()
        exchange = BindExchange(client, proxy)
        exchange.ready.addCallback(lambda pending: pending.accepted().cancel())
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY + SECOND_REPLY + b"data")
        self.assertCancelled(exchange, clock, exchange.acceptedFailure())

    def test_afterAccepted(self) -> None:
        """
        Cancelling after the peer is connected changes nothing.
        """
        client, proxy, _ = bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY + SECOND_REPLY)
        exchange.pending().accepted().cancel()
        exchange.app()
        self.assertFalse(exchange.transport.disconnecting)


class TimeoutTests(SynchronousTestCase):
    """
    The handshake timeout runs until the first reply; C{acceptTimeout}, if
    given, from the first reply to the second.
    """

    def test_handshakeTimeout(self) -> None:
        """
        A proxy that does not send the first reply in time fails C{bind()}
        with L{error.TimeoutError}.
        """
        client, proxy, clock = bind5()
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH)
        clock.advance(DEFAULT_HANDSHAKE_TIMEOUT)
        failure = exchange.readyFailure()
        failure.trap(error.TimeoutError)
        self.assertIn("did not finish", str(failure.value))
        self.assertTrue(exchange.transport.disconnected)

    def test_noAcceptTimeoutByDefault(self) -> None:
        """
        The first reply stops the handshake timer, and by default nothing
        limits the wait for the peer (the proxy has its own deadline).
        """
        client, proxy, clock = bind5(handshakeTimeout=5)
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + FIRST_REPLY)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(3600)
        self.assertEqual(exchange.acceptedResults, [])
        exchange.receive(SECOND_REPLY)
        exchange.app()

    def test_acceptTimeout(self) -> None:
        """
        With C{acceptTimeout}, a peer that does not come in time fails
        C{accepted()} with L{error.TimeoutError} and aborts the connection;
        a peer in time stops the timer.
        """
        client, proxy, clock = bind4(acceptTimeout=10)
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SOCKS4_FIRST)
        clock.advance(9.5)
        self.assertEqual(exchange.acceptedResults, [])
        clock.advance(0.5)
        failure = exchange.acceptedFailure()
        failure.trap(error.TimeoutError)
        self.assertIn("no peer connected", str(failure.value))
        self.assertTrue(exchange.transport.disconnected)

        client, proxy, clock = bind4(acceptTimeout=10)
        exchange = BindExchange(client, proxy)
        exchange.connectProxy()
        exchange.receive(SOCKS4_FIRST)
        clock.advance(9)
        exchange.receive(SOCKS4_SECOND)
        exchange.app()
        self.assertEqual(clock.getDelayedCalls(), [])


class Peer(Collector):
    """
    The peer that connects to the proxy's BIND listener.
    """


class LoopbackBindTestCase(TestCase):
    """
    Binds through a real proxy on loopback, with a real peer.
    """

    timeout = 90

    async def exchange(
        self, client: SOCKS5BindClient | SOCKS4BindClient
    ) -> tuple[Collector, Peer, PendingBind]:
        """
        Bind, connect a peer to the announced address, check the address
        the application sees, and exchange bytes both ways.
        """
        app = Collector()
        factory = Factory.forProtocol(lambda: app)
        pending: PendingBind = await withTimeout(
            client.bind(factory), "the first reply"
        )
        address = pending.address
        assert isinstance(address, IPv4Address)
        self.assertEqual(address.host, LOOPBACK)
        peer = Peer()
        await withTimeout(
            connectProtocol(
                TCP4ClientEndpoint(reactor, address.host, address.port), peer
            ),
            "the peer's connection",
        )
        self.addCleanup(peer.close)
        accepted = await withTimeout(pending.accepted(), "the second reply")
        self.assertIs(accepted, app)
        self.addCleanup(app.close)
        assert app.transport is not None and peer.transport is not None
        self.assertEqual(app.transport.getPeer(), peer.transport.getHost())
        peer.transport.write(b"from the peer")
        self.assertEqual(await app.waitForBytes(13), b"from the peer")
        app.transport.write(os.urandom(100_000) + b"to the peer")
        received = await peer.waitForBytes(100_011)
        self.assertTrue(received.endswith(b"to the peer"))
        return app, peer, pending


class OurServerBindTests(LoopbackBindTestCase):
    """
    BIND through our own server on loopback: SOCKS5, SOCKS4, SOCKS4a.
    """

    async def startServer(self, **kwargs: Any) -> int:
        """
        Start our server (see L{startOurServer}); return its port.
        """
        port, _ = await startOurServer(self, **kwargs)
        return port

    def proxy(self, port: int) -> IStreamClientEndpoint:
        """
        The endpoint of a proxy on loopback C{port}.
        """
        return TCP4ClientEndpoint(reactor, LOOPBACK, port)

    @asyncTest
    async def test_socks5(self) -> None:
        """
        SOCKS5 BIND naming the peer's IP: the peer connects to the announced
        loopback address and bytes flow both ways; the peer's end-of-file
        reaches the application.
        """
        port = await self.startServer()
        app, peer, _ = await self.exchange(
            SOCKS5BindClient(LOOPBACK, 0, self.proxy(port), reactor=reactor)
        )
        assert peer.transport is not None
        peer.transport.loseConnection()
        await withTimeout(app.lost, "the application's connection to close")
        self.assertIn("readConnectionLost", app.events)

    @asyncTest
    async def test_socks5UsernamePassword(self) -> None:
        """
        SOCKS5 BIND with RFC 1929 authentication, to any peer (0.0.0.0).
        """
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"s3cret")
        port = await self.startServer(portal=portalFor([checker]))
        await self.exchange(
            SOCKS5BindClient(
                "0.0.0.0",
                0,
                self.proxy(port),
                credentials=("alice", "s3cret"),
                reactor=reactor,
            )
        )

    @asyncTest
    async def test_socks4(self) -> None:
        """
        SOCKS4 BIND naming the peer's IP.
        """
        port = await self.startServer()
        await self.exchange(
            SOCKS4BindClient(LOOPBACK, 0, self.proxy(port), reactor=reactor)
        )

    @asyncTest
    async def test_socks4a(self) -> None:
        """
        SOCKS4a BIND naming the peer by name ("localhost"), which the server
        resolves.
        """
        port = await self.startServer()
        await self.exchange(
            SOCKS4BindClient("localhost", 0, self.proxy(port), reactor=reactor)
        )

    @asyncTest
    async def test_wrongPeer(self) -> None:
        """
        A peer from another address than the one named (127.0.0.2 instead of
        127.0.0.1) is refused: SOCKS5 reply 2, SOCKS4 reply 91.
        """
        port = await self.startServer()
        for client, cls in [
            (
                SOCKS5BindClient(LOOPBACK, 0, self.proxy(port), reactor=reactor),
                errors.ConnectionNotAllowedError,
            ),
            (
                SOCKS4BindClient(LOOPBACK, 0, self.proxy(port), reactor=reactor),
                errors.SOCKS4RejectedError,
            ),
        ]:
            pending: PendingBind = await withTimeout(
                client.bind(RecordingFactory()), "the first reply"
            )
            address = pending.address
            assert isinstance(address, IPv4Address)
            peer = Peer()
            # The server may close the peer's connection before or after it
            # is reported as connected.
            connecting: Deferred[Any] = connectProtocol(
                TCP4ClientEndpoint(
                    reactor, LOOPBACK, address.port, bindAddress=("127.0.0.2", 0)
                ),
                peer,
            )
            connecting.addErrback(lambda f: None)
            with self.assertRaises(cls):
                await withTimeout(pending.accepted(), "the refusal")
            await withTimeout(peer.lost, "the wrong peer's connection to close")

    @asyncTest
    async def test_cancelWhileWaitingForPeer(self) -> None:
        """
        Cancelling C{accepted()} closes the connection to the server, which
        ends the session and closes its listener.
        """
        port = await self.startServer()
        pending: PendingBind = await withTimeout(
            SOCKS5BindClient(LOOPBACK, 0, self.proxy(port), reactor=reactor).bind(
                RecordingFactory()
            ),
            "the first reply",
        )
        accepted = pending.accepted()
        accepted.cancel()
        with self.assertRaises(error.ConnectingCancelledError):
            await accepted
        address = pending.address
        assert isinstance(address, IPv4Address)

        async def refused() -> bool:
            try:
                protocol = await connectProtocol(
                    TCP4ClientEndpoint(reactor, LOOPBACK, address.port), Peer()
                )
            except error.ConnectionRefusedError:
                return True
            protocol.transport.loseConnection()
            return False

        for _ in range(200):
            if await refused():
                break
        else:
            self.fail("the server's BIND listener still accepts")


class DanteBindTests(LoopbackBindTestCase):
    """
    BIND through Dante (C{danted}), which supports it for SOCKS4 and SOCKS5
    (not SOCKS4a).  Its C{external: 127.0.0.1} makes the listener loopback.
    """

    async def start(self, **kwargs: Any) -> ThirdPartyServer:
        """
        Start Dante in a thread (the starter blocks until it listens).
        """
        server: ThirdPartyServer = await deferToThread(
            startDante, self, commands=("connect", "bind"), **kwargs
        )
        return server

    @asyncTest
    async def test_socks5(self) -> None:
        """
        SOCKS5 BIND through Dante: the peer connects, bytes flow both ways.
        """
        server = await self.start()
        proxy = TCP4ClientEndpoint(reactor, server.host, server.port)
        await self.exchange(SOCKS5BindClient(LOOPBACK, 0, proxy, reactor=reactor))

    @asyncTest
    async def test_socks5UsernamePassword(self) -> None:
        """
        The same with RFC 1929 authentication against a system account.
        """
        server = await self.start(auth=True)
        proxy = TCP4ClientEndpoint(reactor, server.host, server.port)
        assert server.username is not None and server.password is not None
        await self.exchange(
            SOCKS5BindClient(
                LOOPBACK,
                0,
                proxy,
                credentials=(server.username, server.password),
                reactor=reactor,
            )
        )

    @asyncTest
    async def test_socks4(self) -> None:
        """
        SOCKS4 BIND through Dante.
        """
        server = await self.start()
        proxy = TCP4ClientEndpoint(reactor, server.host, server.port)
        await self.exchange(SOCKS4BindClient(LOOPBACK, 0, proxy, reactor=reactor))
