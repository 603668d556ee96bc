# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Unit tests for L{socks_twisted.client} endpoints against scripted proxies on
L{StringTransport}: the bytes sent (checked against hex written from RFC
1928, RFC 1929 and the SOCKS4 / SOCKS4a documents), every reply code, split
and coalesced replies, cancellation at every stage, the handshake timeout,
refusal of requests that cannot be encoded, and what the application
protocol sees.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.address import HostnameAddress, IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IPushProducer,
    ISSLTransport,
    IStreamClientEndpoint,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from socks_twisted import errors
from socks_twisted.client import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    SOCKSTunnelTransport,
)
from socks_twisted.client._handshake import SOCKSClientProtocol

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
    HalfCloseableRecorder,
    HandshakeRecorder,
    ProxyExchange,
    RecordingFactory,
    RecordingProtocol,
    TCPStringTransport,
    h,
    onlyResult,
    overFakeProxy,
    valueOf,
)

# RFC 1928 section 3 and RFC 1929, besides those in _helpers.
SELECT_NONE = h("05 ff")
AUTH_FAILED = h("01 01")
# RFC 1928 section 4: VER CMD RSV ATYP DST.ADDR DST.PORT.
REQUEST_EXAMPLE_COM_80 = h("05 01 00 03 0b") + b"example.com" + h("00 50")
REQUEST_IPV4 = h("05 01 00 01 c0 00 02 01 1f 90")  # 192.0.2.1:8080
REQUEST_IPV6 = h(  # [2001:db8::1]:443, all 16 bytes of the address
    "05 01 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 01 bb"
)
# RFC 1928 section 6: VER REP RSV ATYP BND.ADDR BND.PORT.
REPLY_OK = h("05 00 00 01 0a 00 00 05 04 38")  # bound 10.0.0.5:1080
REPLY_OK_IPV6 = h("05 00 00 04 fe 80 00 00 00 00 00 00 00 00 00 00 00 00 00 07 00 17")
REPLY_OK_NAME = h("05 00 00 03 0a") + b"proxy.test" + h("00 19")
# SOCKS4: VN 4, CD 1, DSTPORT, DSTIP, USERID, NUL; reply VN 0, CD, port, ip.
SOCKS4_REQUEST_FRED = h("04 01 00 50 42 66 07 63") + b"Fred" + h("00")
SOCKS4A_REQUEST = h("04 01 00 50 00 00 00 01 00") + b"example.com" + h("00")
SOCKS4_GRANTED = h("00 5a 04 38 0a 00 00 05")  # bound 10.0.0.5:1080


def socks5(
    host: str = "example.com",
    port: int = 80,
    **kwargs: Any,
) -> tuple[SOCKS5ClientEndpoint, FakeProxyEndpoint, MemoryReactorClock]:
    """
    A SOCKS5 endpoint over a fake proxy endpoint and a memory reactor.
    """
    return overFakeProxy(SOCKS5ClientEndpoint, host, port, **kwargs)


def socks4(
    host: str = "66.102.7.99",
    port: int = 80,
    **kwargs: Any,
) -> tuple[SOCKS4ClientEndpoint, FakeProxyEndpoint, MemoryReactorClock]:
    """
    A SOCKS4 endpoint over a fake proxy endpoint and a memory reactor.
    """
    return overFakeProxy(SOCKS4ClientEndpoint, host, port, **kwargs)


class Exchange(ProxyExchange):
    """
    One connect() through a fake proxy, driven by the test.
    """

    handshake: Protocol | None

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        proxy: FakeProxyEndpoint,
        factory: RecordingFactory | None = None,
    ) -> None:
        super().__init__(proxy)
        self.factory = factory if factory is not None else RecordingFactory()
        self.deferred = endpoint.connect(self.factory)
        self.results: list[object] = []

        def record(result: object) -> object:
            self.results.append(result)
            return None if isinstance(result, Failure) else result

        self.deferred.addBoth(record)

    def app(self) -> RecordingProtocol:
        """
        The connected application protocol.
        """
        return onlyResult(self.results, RecordingProtocol)

    def failure(self) -> Failure:
        """
        How the attempt failed.
        """
        return onlyResult(self.results, Failure)


class SOCKS5BytesTests(SynchronousTestCase):
    """
    What a SOCKS5 endpoint sends, checked against hex from RFC 1928 and RFC
    1929.
    """

    def test_noAuthentication(self) -> None:
        """
        Without credentials the greeting offers method 0 only; a name goes
        out as ATYP 3 with its length.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)
        self.assertEqual(exchange.results, [])
        self.assertEqual(proxy.attempts[0][1].called, False)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), GREETING_NOAUTH)
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(exchange.sent(), REQUEST_EXAMPLE_COM_80)
        self.assertEqual(exchange.results, [])
        exchange.receive(REPLY_OK)
        self.assertIsInstance(exchange.app(), RecordingProtocol)
        self.assertEqual(exchange.sent(), b"")

    def test_usernamePassword(self) -> None:
        """
        With credentials the greeting offers methods 0 and 2; when the proxy
        selects 2, the RFC 1929 request follows, then the CONNECT request.
        """
        endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), GREETING_NOAUTH_USERPASS)
        exchange.receive(SELECT_USERPASS)
        self.assertEqual(exchange.sent(), AUTH_ALICE)
        exchange.receive(AUTH_OK)
        self.assertEqual(exchange.sent(), REQUEST_EXAMPLE_COM_80)
        exchange.receive(REPLY_OK)
        exchange.app()

    def test_noAuthenticationChosenDespiteCredentials(self) -> None:
        """
        Offered both, a proxy that selects no authentication gets the
        request directly and never sees the password.
        """
        endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.sent()
        exchange.receive(SELECT_NOAUTH)
        sent = exchange.sent()
        self.assertEqual(sent, REQUEST_EXAMPLE_COM_80)
        self.assertNotIn(PASSWORD.encode(), sent)

    def test_methodOrder(self) -> None:
        """
        The methods go out in the order the caller gives.
        """
        endpoint, proxy, _ = socks5(
            credentials=(b"alice", b"secret"),
            methods=(0x02, 0x00),
        )
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), h("05 02 02 00"))

    def test_usernamePasswordOnly(self) -> None:
        """
        A caller can offer username/password alone.
        """
        endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD), methods=(2,))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), h("05 01 02"))

    def test_utf8Credentials(self) -> None:
        """
        Text credentials are encoded as UTF-8; an empty password is allowed.
        """
        endpoint, proxy, _ = socks5(credentials=("zoë", ""), methods=(2,))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.sent()
        exchange.receive(SELECT_USERPASS)
        self.assertEqual(exchange.sent(), h("01 04 7a 6f c3 ab 00"))

    def test_ipv4Literal(self) -> None:
        """
        An IPv4 literal goes out as ATYP 1 with its 4 bytes.
        """
        endpoint, proxy, _ = socks5("192.0.2.1", 8080)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.sent()
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(exchange.sent(), REQUEST_IPV4)

    def test_ipv6Literal(self) -> None:
        """
        An IPv6 literal goes out as ATYP 4 with all 16 bytes, whether it is
        written compressed, expanded or in brackets.
        """
        for spelling in (
            "2001:db8::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "[2001:db8::1]",
        ):
            endpoint, proxy, _ = socks5(spelling, 443)
            exchange = Exchange(endpoint, proxy)
            exchange.connectProxy()
            exchange.sent()
            exchange.receive(SELECT_NOAUTH)
            self.assertEqual(exchange.sent(), REQUEST_IPV6, spelling)

    def test_idna(self) -> None:
        """
        A name outside ASCII goes out IDNA-encoded (UTS 46), with the length
        of the encoding.
        """
        endpoint, proxy, _ = socks5("Bücher.example", 80)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.sent()
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(
            exchange.sent(), h("05 01 00 03 15") + b"xn--bcher-kva.example" + h("00 50")
        )

    def test_longestName(self) -> None:
        """
        A name of 255 bytes is the longest SOCKS5 can carry, and goes out.
        """
        name = ".".join(["a" * 63] * 4)[:255]
        self.assertEqual(len(name), 255)
        endpoint, proxy, _ = socks5(name, 80)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.sent()
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(
            exchange.sent(), h("05 01 00 03 ff") + name.encode() + h("00 50")
        )


class RefusedBeforeSendingTests(SynchronousTestCase):
    """
    Requests that cannot be encoded are refused when the endpoint is made,
    before anything connects or a byte is written.
    """

    def assertRefused(
        self,
        make: type[SOCKS5ClientEndpoint] | type[SOCKS4ClientEndpoint],
        host: str,
        port: int,
        options: dict[str, object] | None = None,
    ) -> None:
        """
        Building C{make(host, port, proxy, **options)} over a fake proxy
        raises L{ValueError}, and nothing connects.
        """
        proxy = FakeProxyEndpoint()
        with self.assertRaises(ValueError):
            make(
                host,
                port,
                proxy,
                reactor=MemoryReactorClock(),
                **(options or {}),  # type: ignore[arg-type]
            )
        self.assertEqual(proxy.attempts, [])

    def test_nameTooLong(self) -> None:
        """
        A name of 256 bytes does not fit a SOCKS5 or SOCKS4a request.
        """
        name = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 64
        self.assertEqual(len(name), 256)
        self.assertRefused(SOCKS5ClientEndpoint, name, 80)
        self.assertRefused(SOCKS4ClientEndpoint, name, 80)

    def test_idnaTooLong(self) -> None:
        """
        A name shorter than 255 characters whose IDNA encoding is longer is
        refused too.
        """
        name = ".".join(["中文域名测试例子网站标签长度检验"] * 6)
        self.assertLess(len(name), 255)
        self.assertRefused(SOCKS5ClientEndpoint, name, 80)

    def test_notIDNA(self) -> None:
        """
        A name IDNA cannot encode, or an empty one, is refused.
        """
        self.assertRefused(SOCKS5ClientEndpoint, "a..b\u00a0\u200d", 80)
        self.assertRefused(SOCKS5ClientEndpoint, "", 80)

    def test_badPort(self) -> None:
        """
        Ports outside 1-65535 are refused.
        """
        for port in (0, -1, 65536):
            self.assertRefused(SOCKS5ClientEndpoint, "example.com", port)
            self.assertRefused(SOCKS4ClientEndpoint, "192.0.2.1", port)

    def test_socks4IPv6(self) -> None:
        """
        SOCKS4 cannot carry an IPv6 address.
        """
        self.assertRefused(SOCKS4ClientEndpoint, "::1", 80)

    def test_socks4UserID(self) -> None:
        """
        A SOCKS4 user ID with a NUL, or longer than 255 bytes, is refused.
        """
        self.assertRefused(SOCKS4ClientEndpoint, "192.0.2.1", 80, {"userID": b"a\0b"})
        self.assertRefused(
            SOCKS4ClientEndpoint, "192.0.2.1", 80, {"userID": b"u" * 256}
        )

    def test_credentials(self) -> None:
        """
        RFC 1929 fields of more than 255 bytes, or an empty username, are
        refused.
        """
        for credentials in (("u" * 256, "p"), ("u", "p" * 256), ("", "p")):
            self.assertRefused(
                SOCKS5ClientEndpoint, "example.com", 80, {"credentials": credentials}
            )

    def test_methods(self) -> None:
        """
        Methods must be ones this client implements, each once, at least one,
        and username/password goes with credentials both ways.
        """
        cases: list[dict[str, object]] = [
            {"methods": ()},
            {"methods": (0, 0)},
            {"methods": (1,)},
            {"methods": (0x80,)},
            {"methods": (2,)},
            {"methods": (0,), "credentials": ("u", "p")},
        ]
        for options in cases:
            self.assertRefused(SOCKS5ClientEndpoint, "example.com", 80, options)

    def test_timeout(self) -> None:
        """
        A handshake timeout must be positive.
        """
        for timeout in (0, -1.0):
            self.assertRefused(
                SOCKS5ClientEndpoint, "example.com", 80, {"handshakeTimeout": timeout}
            )

    def test_resolverNeeded(self) -> None:
        """
        Local resolution with a reactor that has no name resolver is refused.
        """
        from twisted.internet.task import Clock

        with self.assertRaises(ValueError):
            SOCKS5ClientEndpoint(
                "example.com",
                80,
                FakeProxyEndpoint(),
                resolveLocally=True,
                reactor=Clock(),
            )

    def test_nonASCIIBytes(self) -> None:
        """
        A host given as bytes must be ASCII.
        """
        with self.assertRaises(ValueError):
            SOCKS5ClientEndpoint(b"b\xc3\xbccher.example", 80, FakeProxyEndpoint())


class SOCKS4BytesTests(SynchronousTestCase):
    """
    What a SOCKS4 endpoint sends, checked against the SOCKS4 and SOCKS4a
    documents.
    """

    def test_socks4(self) -> None:
        """
        An IPv4 literal goes out as SOCKS4 with the user ID.
        """
        endpoint, proxy, _ = socks4(userID=b"Fred")
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), SOCKS4_REQUEST_FRED)
        exchange.receive(SOCKS4_GRANTED)
        exchange.app()

    def test_socks4a(self) -> None:
        """
        A name goes out as SOCKS4a: DSTIP 0.0.0.1, empty user ID, the name.
        """
        endpoint, proxy, _ = socks4("example.com")
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), SOCKS4A_REQUEST)

    def test_acceptsVersion4Reply(self) -> None:
        """
        A reply with VN 4 instead of 0, as some servers send, is accepted.
        """
        endpoint, proxy, _ = socks4()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(h("04 5a 00 00 00 00 00 00"))
        exchange.app()


class ResolveLocallyTests(SynchronousTestCase):
    """
    With C{resolveLocally}, names are resolved with the reactor's resolver
    and the proxy gets an address.
    """

    def setUp(self) -> None:
        self.proxy = FakeProxyEndpoint()
        self.reactor = MemoryReactorClock()
        self.resolver = FakeResolver()
        self.reactor.installNameResolver(self.resolver)

    def test_socks5(self) -> None:
        """
        SOCKS5 asks for IPv4 and IPv6 addresses, sends ATYP 4 for an IPv6
        result, and the application sees that address as its peer.
        """
        endpoint = SOCKS5ClientEndpoint(
            "example.com", 443, self.proxy, resolveLocally=True, reactor=self.reactor
        )
        exchange = Exchange(endpoint, self.proxy)
        [(_, name, _, types)] = self.resolver.queries
        self.assertEqual(name, "example.com")
        self.assertEqual(set(types or ()), {IPv4Address, IPv6Address})
        self.assertEqual(self.proxy.attempts, [])
        self.resolver.answer(IPv6Address("TCP", "2001:db8::1", 443))
        exchange.connectProxy()
        exchange.sent()
        exchange.receive(SELECT_NOAUTH)
        self.assertEqual(exchange.sent(), REQUEST_IPV6)
        exchange.receive(REPLY_OK)
        peer = exchange.app().transport.getPeer()  # type: ignore[union-attr]
        self.assertEqual(peer, IPv6Address("TCP", "2001:db8::1", 443))

    def test_socks4(self) -> None:
        """
        SOCKS4 asks for IPv4 addresses only and sends plain SOCKS4.
        """
        endpoint = SOCKS4ClientEndpoint(
            "example.com",
            80,
            self.proxy,
            userID="Fred",
            resolveLocally=True,
            reactor=self.reactor,
        )
        exchange = Exchange(endpoint, self.proxy)
        [(_, _, _, types)] = self.resolver.queries
        self.assertEqual(list(types or ()), [IPv4Address])
        self.resolver.answer(IPv4Address("TCP", "66.102.7.99", 80))
        exchange.connectProxy()
        self.assertEqual(exchange.sent(), SOCKS4_REQUEST_FRED)

    def test_literalNotResolved(self) -> None:
        """
        An IP literal is not looked up.
        """
        endpoint = SOCKS5ClientEndpoint(
            "192.0.2.1", 8080, self.proxy, resolveLocally=True, reactor=self.reactor
        )
        Exchange(endpoint, self.proxy)
        self.assertEqual(self.resolver.queries, [])
        self.assertEqual(len(self.proxy.attempts), 1)

    def test_noAddress(self) -> None:
        """
        A name without addresses fails with L{error.DNSLookupError} and no
        connection to the proxy.
        """
        endpoint = SOCKS5ClientEndpoint(
            "nowhere.invalid", 80, self.proxy, resolveLocally=True, reactor=self.reactor
        )
        exchange = Exchange(endpoint, self.proxy)
        self.resolver.answer()
        exchange.failure().trap(error.DNSLookupError)
        self.assertEqual(self.proxy.attempts, [])

    def test_resolverRaises(self) -> None:
        """
        A resolver that raises fails the attempt with its exception.
        """

        class Broken(FakeResolver):
            def resolveHostName(self, *args: object, **kwargs: object) -> Any:
                raise RuntimeError("resolver broken")

        self.reactor.installNameResolver(Broken())
        endpoint = SOCKS5ClientEndpoint(
            "example.com", 80, self.proxy, resolveLocally=True, reactor=self.reactor
        )
        exchange = Exchange(endpoint, self.proxy)
        exchange.failure().trap(RuntimeError)
        self.assertEqual(self.proxy.attempts, [])

    def test_cancelWhileResolving(self) -> None:
        """
        Cancelling during resolution fails with
        L{error.ConnectingCancelledError}; the late answer connects nothing.
        """
        endpoint = SOCKS5ClientEndpoint(
            "example.com", 80, self.proxy, resolveLocally=True, reactor=self.reactor
        )
        exchange = Exchange(endpoint, self.proxy)
        exchange.deferred.cancel()
        exchange.failure().trap(error.ConnectingCancelledError)
        self.resolver.answer(IPv4Address("TCP", "192.0.2.1", 80))
        self.assertEqual(self.proxy.attempts, [])


class ReplyCodeTests(SynchronousTestCase):
    """
    Every failure reply maps to its exception, which is also Twisted's
    matching error where there is one; the connection is closed.
    """

    def socks5Failure(self, code: int) -> tuple[Failure, TCPStringTransport]:
        """
        The failure of a SOCKS5 CONNECT answered with REP C{code}.
        """
        endpoint, proxy, reactor = socks5()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH)
        exchange.receive(h(f"05 {code:02x} 00 01 00 00 00 00 00 00"))
        self.assertEqual(reactor.getDelayedCalls(), [])
        return exchange.failure(), exchange.transport

    def socks4Failure(self, code: int) -> Failure:
        """
        The failure of a SOCKS4 CONNECT answered with CD C{code}.
        """
        endpoint, proxy, _ = socks4()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(h(f"00 {code:02x} 00 00 00 00 00 00"))
        self.assertTrue(exchange.transport.disconnecting)
        return exchange.failure()

    def test_socks5Codes(self) -> None:
        """
        REP 1 to 8 each have their class and code, and the connection to the
        proxy is closed.
        """
        expected: dict[int, type[errors.SOCKSReplyError]] = {
            0x01: errors.GeneralServerFailureError,
            0x02: errors.ConnectionNotAllowedError,
            0x03: errors.NetworkUnreachableError,
            0x04: errors.HostUnreachableError,
            0x05: errors.ConnectionRefusedError,
            0x06: errors.TTLExpiredError,
            0x07: errors.CommandNotSupportedError,
            0x08: errors.AddressTypeNotSupportedError,
        }
        for code, cls in expected.items():
            failure, transport = self.socks5Failure(code)
            self.assertIs(type(failure.value), cls)
            self.assertEqual(valueOf(failure, errors.SOCKSReplyError).code, code)
            self.assertIsInstance(failure.value, errors.SOCKSError)
            self.assertIsInstance(failure.value, error.ConnectError)
            self.assertTrue(transport.disconnecting)

    def test_twistedErrors(self) -> None:
        """
        Refused, unreachable and TTL expired are also Twisted's
        L{error.ConnectionRefusedError}, L{error.NoRouteError} and
        L{error.TCPTimedOutError}.
        """
        self.assertIsInstance(
            self.socks5Failure(5)[0].value, error.ConnectionRefusedError
        )
        self.assertIsInstance(self.socks5Failure(3)[0].value, error.NoRouteError)
        self.assertIsInstance(self.socks5Failure(4)[0].value, error.NoRouteError)
        self.assertIsInstance(self.socks5Failure(6)[0].value, error.TCPTimedOutError)
        self.assertNotIsInstance(
            self.socks5Failure(1)[0].value, error.ConnectionRefusedError
        )

    def test_socks5Unknown(self) -> None:
        """
        A REP no standard defines gives L{errors.UnknownReplyError} with it.
        """
        for code in (0x09, 0x7F, 0xFF):
            failure, _ = self.socks5Failure(code)
            self.assertIsInstance(failure.value, errors.UnknownReplyError)
            self.assertEqual(valueOf(failure, errors.SOCKSReplyError).code, code)

    def test_socks4Codes(self) -> None:
        """
        CD 91, 92 and 93 have their classes; others are unknown.
        """
        self.assertIs(type(self.socks4Failure(91).value), errors.SOCKS4RejectedError)
        self.assertIs(
            type(self.socks4Failure(92).value), errors.SOCKS4IdentdUnreachableError
        )
        self.assertIs(
            type(self.socks4Failure(93).value), errors.SOCKS4IdentdMismatchError
        )
        unknown = valueOf(self.socks4Failure(0), errors.UnknownReplyError)
        self.assertEqual(unknown.code, 0)

    def test_noAcceptableMethods(self) -> None:
        """
        Method 0xFF gives L{errors.NoAcceptableMethodsError}, naming what was
        offered.
        """
        endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NONE)
        failure = exchange.failure()
        failure.trap(errors.NoAcceptableMethodsError)
        self.assertIn("username/password", str(failure.value))
        self.assertTrue(exchange.transport.disconnecting)

    def test_authenticationFailed(self) -> None:
        """
        An RFC 1929 failure status gives L{errors.AuthenticationFailedError}
        and the request is never sent; the message holds no password.
        """
        endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_USERPASS)
        exchange.sent()
        exchange.receive(AUTH_FAILED)
        failure = exchange.failure()
        failure.trap(errors.AuthenticationFailedError)
        self.assertNotIn(PASSWORD, str(failure.value))
        self.assertEqual(exchange.sent(), b"")
        self.assertTrue(exchange.transport.disconnecting)

    def test_connectErrorMessage(self) -> None:
        """
        A reply error says what happened in words.
        """
        failure, _ = self.socks5Failure(5)
        self.assertIn("Connection refused", str(failure.value))


class ProtocolErrorTests(SynchronousTestCase):
    """
    A proxy that breaks the protocol gives L{errors.SOCKSProtocolError} and
    the connection to it is aborted.
    """

    def assertProtocolError(
        self, exchange: Exchange, data: bytes, words: str
    ) -> errors.SOCKSProtocolError:
        """
        After the proxy sends C{data}, the attempt failed with a protocol
        error mentioning C{words} and the connection is aborted.
        """
        exchange.receive(data)
        failure = exchange.failure()
        failure.trap(errors.SOCKSProtocolError)
        self.assertIn(words, str(failure.value))
        self.assertTrue(exchange.transport.disconnected)
        self.assertEqual(exchange.factory.built, [])
        # Whatever comes after is ignored.
        exchange.receive(REPLY_OK)
        return valueOf(failure, errors.SOCKSProtocolError)

    def connected5(self, **kwargs: Any) -> Exchange:
        """
        A SOCKS5 exchange connected to the proxy.
        """
        endpoint, proxy, _ = socks5(**kwargs)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.sent()
        return exchange

    def test_methodNotOffered(self) -> None:
        """
        A proxy that selects a method that was not offered (GSSAPI, or
        username/password when only no-auth was) breaks the protocol.
        """
        self.assertProtocolError(self.connected5(), h("05 02"), "not offered")
        self.assertProtocolError(self.connected5(), h("05 01"), "not offered")

    def test_badVersion(self) -> None:
        """
        A method selection, status or reply with a wrong version breaks the
        protocol.
        """
        self.assertProtocolError(self.connected5(), h("04 00"), "method selection")
        exchange = self.connected5(credentials=("alice", PASSWORD))
        exchange.receive(SELECT_USERPASS)
        self.assertProtocolError(exchange, h("05 00"), "authentication status")
        exchange = self.connected5()
        exchange.receive(SELECT_NOAUTH)
        self.assertProtocolError(exchange, h("04 00 00 01 00"), "SOCKS5 reply")

    def test_badAddressType(self) -> None:
        """
        A reply with an unknown ATYP breaks the protocol.
        """
        exchange = self.connected5()
        exchange.receive(SELECT_NOAUTH)
        self.assertProtocolError(exchange, h("05 00 00 02 00 00"), "address type")

    def test_socks4BadVersion(self) -> None:
        """
        A SOCKS4 reply whose VN is neither 0 nor 4 breaks the protocol (a
        SOCKS5 server answering a SOCKS4 request, for instance).
        """
        endpoint, proxy, _ = socks4()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertProtocolError(exchange, h("05 ff"), "SOCKS4 reply")

    def test_httpServer(self) -> None:
        """
        An HTTP server mistaken for a proxy breaks the protocol at once.
        """
        self.assertProtocolError(self.connected5(), b"HTTP/1.1 400 Bad", "version")

    def test_noSecrets(self) -> None:
        """
        No message, repr or error text shows the password.
        """
        endpoint, _, _ = socks5(credentials=("alice", PASSWORD))
        self.assertNotIn(PASSWORD, repr(endpoint))
        exchange = self.connected5(credentials=("alice", PASSWORD))
        exchange.receive(SELECT_USERPASS)
        value = self.assertProtocolError(exchange, h("02 00"), "status")
        self.assertNotIn(PASSWORD, str(value))
        self.assertNotIn(PASSWORD, repr(value))


class ProxyClosedTests(SynchronousTestCase):
    """
    A proxy that closes the connection during the handshake gives
    L{errors.SOCKSProtocolError} saying what we were waiting for.
    """

    def closedWhile(self, exchange: Exchange, words: str, halfClose: bool) -> None:
        """
        Close the connection (or only its read side) and check the error.
        """
        assert exchange.handshake is not None
        if halfClose:
            IHalfCloseableProtocol(exchange.handshake).readConnectionLost()
            self.assertTrue(exchange.transport.disconnected)
        exchange.handshake.connectionLost(Failure(error.ConnectionDone()))
        failure = exchange.failure()
        failure.trap(errors.SOCKSProtocolError)
        self.assertIn("closed the connection", str(failure.value))
        self.assertIn(words, str(failure.value))
        self.assertEqual(exchange.factory.built, [])

    def test_everyStage(self) -> None:
        """
        Closed while waiting for the method selection, the authentication
        status, the SOCKS5 reply (half-way through it too) or the SOCKS4
        reply, by a full close or by end-of-file only.
        """
        for halfClose in (False, True):
            endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
            exchange = Exchange(endpoint, proxy)
            exchange.connectProxy()
            self.closedWhile(exchange, "method selection", halfClose)

            endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
            exchange = Exchange(endpoint, proxy)
            exchange.connectProxy()
            exchange.receive(SELECT_USERPASS)
            self.closedWhile(exchange, "authentication status", halfClose)

            endpoint, proxy, _ = socks5()
            exchange = Exchange(endpoint, proxy)
            exchange.connectProxy()
            exchange.receive(SELECT_NOAUTH + REPLY_OK[:4])
            self.closedWhile(exchange, "SOCKS5 reply", halfClose)

            endpoint4, proxy, _ = socks4()
            exchange = Exchange(endpoint4, proxy)
            exchange.connectProxy()
            self.closedWhile(exchange, "SOCKS4 reply", halfClose)

    def test_proxyUnreachable(self) -> None:
        """
        The failure to reach the proxy is passed on as it is.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)
        proxy.attempts[0][1].errback(Failure(error.ConnectionRefusedError()))
        exchange.failure().trap(error.ConnectionRefusedError)

    def test_proxyEndpointRaises(self) -> None:
        """
        A proxy endpoint whose C{connect} raises fails the attempt.
        """

        class Broken(FakeProxyEndpoint):
            def connect(self, protocolFactory: object) -> Deferred[IProtocol]:
                raise RuntimeError("broken")

        endpoint = SOCKS5ClientEndpoint(
            "example.com", 80, Broken(), reactor=MemoryReactorClock()
        )
        failures: list[Failure] = []
        endpoint.connect(RecordingFactory()).addErrback(failures.append)
        [failure] = failures
        failure.trap(RuntimeError)


class SplitAndCoalescedTests(SynchronousTestCase):
    """
    However the proxy's bytes are cut, the outcome is the same, and bytes
    that come with the reply reach the application at once.
    """

    def run5(self, chunks: list[bytes], **kwargs: Any) -> tuple[bytes, Exchange]:
        """
        Run a SOCKS5 handshake feeding C{chunks}, return all bytes written.
        """
        endpoint, proxy, _ = socks5(**kwargs)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        for chunk in chunks:
            exchange.receive(chunk)
        return exchange.sent(), exchange

    def test_byteByByte(self) -> None:
        """
        Every message split into single bytes gives the same bytes sent and
        the same result as whole messages.
        """
        script = SELECT_USERPASS + AUTH_OK + REPLY_OK_NAME
        whole, exchange = self.run5(
            [SELECT_USERPASS, AUTH_OK, REPLY_OK_NAME], credentials=("alice", PASSWORD)
        )
        app = exchange.app()
        split, exchange = self.run5(
            [bytes([b]) for b in script], credentials=("alice", PASSWORD)
        )
        self.assertEqual(split, whole)
        self.assertEqual(
            split, GREETING_NOAUTH_USERPASS + AUTH_ALICE + REQUEST_EXAMPLE_COM_80
        )
        self.assertEqual(exchange.app().received, app.received)

    @given(st.lists(st.integers(min_value=0, max_value=40), max_size=10))
    def test_anySplit(self, cuts: list[int]) -> None:
        """
        Cutting the whole script (method selection, status, reply and
        application data) anywhere gives the same bytes sent and the same
        application bytes.
        """
        script = SELECT_USERPASS + AUTH_OK + REPLY_OK_IPV6 + b"hello"
        points = sorted({c for c in cuts if 0 < c < len(script)})
        chunks = [
            script[a:b]
            for a, b in zip([0, *points], [*points, len(script)], strict=True)
        ]
        sent, exchange = self.run5(chunks, credentials=("alice", PASSWORD))
        self.assertEqual(
            sent, GREETING_NOAUTH_USERPASS + AUTH_ALICE + REQUEST_EXAMPLE_COM_80
        )
        self.assertEqual(b"".join(exchange.app().received), b"hello")

    def test_coalesced(self) -> None:
        """
        A proxy that sends every answer and the first application bytes in
        one segment gets the same requests, and the application receives
        those bytes in one call, after it is connected and the L{Deferred}
        has fired.
        """
        order: list[str] = []
        factory = RecordingFactory()
        endpoint, proxy, _ = socks5(credentials=("alice", PASSWORD))
        exchange = Exchange(endpoint, proxy, factory)

        def fired(app: IProtocol) -> IProtocol:
            assert isinstance(app, RecordingProtocol)
            order.append(f"fired with {len(app.received)} chunks")
            return app

        exchange.deferred.addCallback(fired)
        exchange.connectProxy()
        exchange.receive(SELECT_USERPASS + AUTH_OK + REPLY_OK + b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(
            exchange.sent(),
            GREETING_NOAUTH_USERPASS + AUTH_ALICE + REQUEST_EXAMPLE_COM_80,
        )
        app = factory.built[0]
        self.assertEqual(app.received, [b"HTTP/1.1 200 OK\r\n"])
        self.assertEqual(app.events, ["connectionMade", "dataReceived"])
        self.assertEqual(order, ["fired with 0 chunks"])

    def test_socks4Coalesced(self) -> None:
        """
        The same for SOCKS4: the bytes after the 8-byte reply are the
        application's.
        """
        endpoint, proxy, _ = socks4()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SOCKS4_GRANTED + b"\x00\x5a more")
        self.assertEqual(exchange.app().received, [b"\x00\x5a more"])

    def test_afterwardOneCallEach(self) -> None:
        """
        Once established, each chunk from the proxy is one C{dataReceived}
        of the application, unchanged, even bytes that look like SOCKS.
        """
        _, exchange = self.run5([SELECT_NOAUTH, REPLY_OK])
        for chunk in (REPLY_OK, b"", b"x" * 70000, SELECT_NONE):
            exchange.receive(chunk)
        self.assertEqual(
            exchange.app().received, [REPLY_OK, b"", b"x" * 70000, SELECT_NONE]
        )


class CancellationTests(SynchronousTestCase):
    """
    Cancelling at any stage fails with L{error.ConnectingCancelledError},
    stops what is in progress, and leaves no timer.
    """

    def assertCancelled(self, exchange: Exchange, reactor: MemoryReactorClock) -> None:
        """
        Cancel, then check the outcome, and that a late close of the
        connection changes nothing.
        """
        exchange.deferred.cancel()
        failure = exchange.failure()
        failure.trap(error.ConnectingCancelledError)
        self.assertEqual(
            valueOf(failure, error.ConnectingCancelledError).address,
            HostnameAddress(b"example.com", 80),
        )
        self.assertEqual(reactor.getDelayedCalls(), [])
        if exchange.handshake is not None:
            self.assertTrue(exchange.transport.disconnected)
            exchange.handshake.connectionLost(Failure(error.ConnectionAborted()))
            exchange.receive(REPLY_OK)
        self.assertEqual(len(exchange.results), 1)
        self.assertEqual(exchange.factory.built, [])

    def test_beforeProxyConnected(self) -> None:
        """
        While connecting to the proxy: that attempt is cancelled; if the
        proxy endpoint still builds a protocol, it gets none.
        """
        endpoint, proxy, reactor = socks5()
        exchange = Exchange(endpoint, proxy)
        self.assertCancelled(exchange, reactor)
        self.assertEqual(proxy.cancelled, 1)
        factory = proxy.attempts[0][0]
        self.assertIsNone(factory.buildProtocol(PROXY_ADDRESS))

    def test_proxyEndpointIgnoresCancel(self) -> None:
        """
        If the proxy endpoint ignores the cancellation and connects anyway,
        that connection is aborted at once and nothing is written.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)
        factory, _ = proxy.attempts[0]
        protocol = factory.buildProtocol(PROXY_ADDRESS)
        assert protocol is not None
        exchange.deferred.cancel()
        exchange.failure().trap(error.ConnectingCancelledError)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")

    def test_waitingForMethodSelection(self) -> None:
        """
        After the greeting: the connection to the proxy is aborted.
        """
        endpoint, proxy, reactor = socks5()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertCancelled(exchange, reactor)
        self.assertEqual(proxy.cancelled, 0)

    def test_waitingForAuthentication(self) -> None:
        """
        After the RFC 1929 request: aborted.
        """
        endpoint, proxy, reactor = socks5(credentials=("alice", PASSWORD))
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_USERPASS)
        self.assertCancelled(exchange, reactor)

    def test_waitingForReply(self) -> None:
        """
        After the request, and half-way through the reply: aborted.
        """
        endpoint, proxy, reactor = socks5()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK[:5])
        self.assertCancelled(exchange, reactor)

    def test_waitingForSOCKS4Reply(self) -> None:
        """
        After a SOCKS4a request: aborted.
        """
        endpoint, proxy, reactor = socks4("example.com")
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertCancelled(exchange, reactor)

    def test_afterSuccess(self) -> None:
        """
        Cancelling after success changes nothing.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK)
        exchange.deferred.cancel()
        exchange.app()
        self.assertFalse(exchange.transport.disconnecting)


class TimeoutTests(SynchronousTestCase):
    """
    The handshake timeout runs from the connection to the proxy to the
    final reply.
    """

    def test_default(self) -> None:
        """
        By default the handshake may take L{DEFAULT_HANDSHAKE_TIMEOUT}
        seconds, counted from the connection to the proxy.
        """
        endpoint, proxy, reactor = socks5()
        exchange = Exchange(endpoint, proxy)
        reactor.advance(DEFAULT_HANDSHAKE_TIMEOUT * 2)
        self.assertEqual(exchange.results, [])
        exchange.connectProxy()
        reactor.advance(DEFAULT_HANDSHAKE_TIMEOUT - 0.001)
        self.assertEqual(exchange.results, [])
        reactor.advance(0.001)
        failure = exchange.failure()
        failure.trap(error.TimeoutError)
        self.assertIn("did not finish", str(failure.value))
        self.assertTrue(exchange.transport.disconnected)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_timeoutWaitingForReply(self) -> None:
        """
        A proxy that stalls before its reply times out; its late reply is
        ignored.
        """
        endpoint, proxy, reactor = socks5(handshakeTimeout=5)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK[:3])
        reactor.advance(5)
        exchange.failure().trap(error.TimeoutError)
        assert exchange.handshake is not None
        exchange.receive(REPLY_OK[3:])
        exchange.handshake.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(len(exchange.results), 1)
        self.assertEqual(exchange.factory.built, [])

    def test_cancelledOnSuccess(self) -> None:
        """
        Success and failure stop the timer.
        """
        endpoint, proxy, reactor = socks5(handshakeTimeout=5)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        exchange.receive(SELECT_NOAUTH + REPLY_OK)
        self.assertEqual(reactor.getDelayedCalls(), [])
        reactor.advance(10)
        exchange.app()
        self.assertFalse(exchange.transport.disconnecting)

    def test_none(self) -> None:
        """
        C{handshakeTimeout=None} sets no timer.
        """
        endpoint, proxy, reactor = socks5(handshakeTimeout=None)
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        self.assertEqual(reactor.getDelayedCalls(), [])


class ApplicationTests(SynchronousTestCase):
    """
    What the application protocol sees once the tunnel is up.
    """

    def established(
        self,
        factory: RecordingFactory | None = None,
        host: str = "example.com",
        reply: bytes = REPLY_OK,
        transport: TCPStringTransport | None = None,
    ) -> Exchange:
        """
        A SOCKS5 exchange that succeeded.
        """
        endpoint, proxy, _ = socks5(host, 80)
        exchange = Exchange(endpoint, proxy, factory)
        if transport is not None:
            exchange.transport = transport
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + reply)
        exchange.sent()
        return exchange

    def tunnel(self, exchange: Exchange) -> SOCKSTunnelTransport:
        """
        The application's transport.
        """
        transport = exchange.app().transport
        assert isinstance(transport, SOCKSTunnelTransport)
        return transport

    def test_peerAndBoundAddress(self) -> None:
        """
        C{getPeer()} is the target: L{HostnameAddress} for a name (in its
        IDNA form), L{IPv4Address} / L{IPv6Address} for literals.  The
        proxy's BND address is C{proxyBoundAddress}; C{getHost()} and
        C{proxyAddress} are those of the connection to the proxy.  The
        factory got the target address too.
        """
        cases: list[tuple[str, object]] = [
            ("example.com", HostnameAddress(b"example.com", 80)),
            ("bücher.example", HostnameAddress(b"xn--bcher-kva.example", 80)),
            ("192.0.2.1", IPv4Address("TCP", "192.0.2.1", 80)),
            ("2001:db8::1", IPv6Address("TCP", "2001:db8::1", 80)),
        ]
        for host, peer in cases:
            factory = RecordingFactory()
            exchange = self.established(factory, host)
            tunnel = self.tunnel(exchange)
            self.assertEqual(tunnel.getPeer(), peer)
            self.assertEqual(factory.addresses, [peer])
            self.assertEqual(
                tunnel.proxyBoundAddress, IPv4Address("TCP", "10.0.0.5", 1080)
            )
            self.assertEqual(tunnel.getHost(), exchange.transport.getHost())
            self.assertEqual(tunnel.proxyAddress, PROXY_ADDRESS)
        bound6 = self.tunnel(self.established(reply=REPLY_OK_IPV6)).proxyBoundAddress
        self.assertEqual(bound6, IPv6Address("TCP", "fe80::7", 23))
        boundName = self.tunnel(self.established(reply=REPLY_OK_NAME)).proxyBoundAddress
        self.assertEqual(boundName, HostnameAddress(b"proxy.test", 25))

    def test_socks4Bound(self) -> None:
        """
        A SOCKS4 reply's port and address are the bound address.
        """
        endpoint, proxy, _ = socks4()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        exchange.receive(SOCKS4_GRANTED)
        tunnel = exchange.app().transport
        assert isinstance(tunnel, SOCKSTunnelTransport)
        self.assertEqual(tunnel.proxyBoundAddress, IPv4Address("TCP", "10.0.0.5", 1080))
        self.assertEqual(tunnel.getPeer(), IPv4Address("TCP", "66.102.7.99", 80))

    def test_interfaces(self) -> None:
        """
        The tunnel is an L{ITransport}, L{IConsumer} and L{IPushProducer};
        an L{ITCPTransport} only over one; never an L{ISSLTransport}.
        """
        tunnel = self.tunnel(self.established())
        for interface in (ITransport, IConsumer, IPushProducer, ITCPTransport):
            self.assertTrue(verifyObject(interface, tunnel))
        self.assertFalse(ISSLTransport.providedBy(tunnel))
        plain = self.tunnel(self.established(transport=StringTransport()))  # type: ignore[arg-type]
        self.assertFalse(ITCPTransport.providedBy(plain))

    def test_passesCallsOn(self) -> None:
        """
        Writes, closes, half-close, TCP options and producer calls go to the
        connection to the proxy.
        """
        exchange = self.established()
        tunnel = self.tunnel(exchange)
        proxyTransport = exchange.transport
        tunnel.write(b"a")
        tunnel.writeSequence([b"b", b"c"])
        self.assertEqual(proxyTransport.value(), b"abc")
        tunnel.setTcpNoDelay(True)
        tunnel.setTcpKeepAlive(True)
        self.assertTrue(tunnel.getTcpNoDelay() and proxyTransport.noDelay)
        self.assertTrue(tunnel.getTcpKeepAlive() and proxyTransport.keepAlive)
        producer = StringTransport()
        tunnel.registerProducer(producer, True)
        self.assertIs(proxyTransport.producer, producer)
        tunnel.unregisterProducer()
        self.assertIsNone(proxyTransport.producer)
        tunnel.pauseProducing()
        self.assertEqual(proxyTransport.producerState, "paused")
        tunnel.resumeProducing()
        self.assertEqual(proxyTransport.producerState, "producing")
        tunnel.loseWriteConnection()
        self.assertTrue(proxyTransport.writeClosed)
        self.assertFalse(tunnel.disconnecting)
        tunnel.stopProducing()
        self.assertEqual(proxyTransport.producerState, "stopped")
        tunnel.loseConnection()
        self.assertTrue(proxyTransport.disconnecting)
        self.assertTrue(tunnel.disconnecting)
        tunnel.abortConnection()
        self.assertTrue(proxyTransport.disconnected)
        self.assertIn("example.com", repr(tunnel))

    def test_connectionLost(self) -> None:
        """
        The end of the connection reaches the application with its reason.
        """
        exchange = self.established()
        assert exchange.handshake is not None
        reason = Failure(error.ConnectionLost())
        exchange.handshake.connectionLost(reason)
        self.assertIs(exchange.app().lost, reason)

    def test_halfClose(self) -> None:
        """
        End-of-file and the end of writing reach an application that
        provides L{IHalfCloseableProtocol}; the connection stays open.
        """
        exchange = self.established(RecordingFactory(HalfCloseableRecorder))
        handshake = IHalfCloseableProtocol(exchange.handshake)
        handshake.readConnectionLost()
        handshake.writeConnectionLost()
        self.assertEqual(
            exchange.app().events,
            ["connectionMade", "readConnectionLost", "writeConnectionLost"],
        )
        self.assertFalse(exchange.transport.disconnecting)

    def test_noHalfClose(self) -> None:
        """
        End-of-file closes the connection of an application that does not
        provide L{IHalfCloseableProtocol}, as TCP would.
        """
        exchange = self.established()
        handshake = IHalfCloseableProtocol(exchange.handshake)
        handshake.writeConnectionLost()
        self.assertFalse(exchange.transport.disconnecting)
        handshake.readConnectionLost()
        self.assertTrue(exchange.transport.disconnecting)
        self.assertEqual(exchange.app().events, ["connectionMade"])

    def test_handshakeListener(self) -> None:
        """
        Once the tunnel is up, the handshake protocol provides
        L{IHandshakeListener} if the application does, and passes
        C{handshakeCompleted} on; before, it does not provide it (a TLS
        handshake then was with the proxy), and a call is not passed on.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy, RecordingFactory(HandshakeRecorder))
        exchange.connectProxy()
        handshake = exchange.handshake
        assert isinstance(handshake, SOCKSClientProtocol)
        self.assertFalse(IHandshakeListener.providedBy(handshake))
        handshake.handshakeCompleted()
        exchange.receive(SELECT_NOAUTH + REPLY_OK)
        self.assertTrue(IHandshakeListener.providedBy(handshake))
        IHandshakeListener(handshake).handshakeCompleted()
        self.assertEqual(
            exchange.app().events, ["connectionMade", "handshakeCompleted"]
        )
        plain = self.established()
        self.assertFalse(IHandshakeListener.providedBy(plain.handshake))

    def test_halfCloseSurvivesTCPEndpoint(self) -> None:
        """
        Connected by a real L{TCP4ClientEndpoint}, the protocol the TCP
        transport talks to provides L{IHalfCloseableProtocol} (Twisted's
        wrapper keeps only one of the interfaces it copies, so ours must not
        offer L{IHandshakeListener} up front).
        """
        reactor = MemoryReactorClock()
        endpoint = SOCKS5ClientEndpoint(
            "example.com",
            80,
            TCP4ClientEndpoint(reactor, "127.0.0.1", 1080),
            reactor=reactor,
        )
        endpoint.connect(RecordingFactory(HandshakeRecorder))
        [(_, _, factory, _, _)] = reactor.tcpClients
        wrapper = factory.buildProtocol(PROXY_ADDRESS)
        self.assertTrue(IHalfCloseableProtocol.providedBy(wrapper))

    def test_logPrefix(self) -> None:
        """
        The log prefix is the handshake's, then the application's.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)
        exchange.connectProxy()
        assert exchange.handshake is not None
        self.assertEqual(exchange.handshake.logPrefix(), "SOCKS5Client")
        exchange.receive(SELECT_NOAUTH + REPLY_OK)
        self.assertEqual(exchange.handshake.logPrefix(), "RecordingProtocol")

    def test_noProtocol(self) -> None:
        """
        A factory that builds no protocol fails the attempt with
        L{error.NoProtocol} and the connection to the proxy is aborted.
        """
        endpoint, proxy, _ = socks5()

        class NoneFactory(RecordingFactory):
            def buildProtocol(self, addr: object) -> None:  # type: ignore[override]
                return None

        exchange = Exchange(endpoint, proxy, NoneFactory())
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK + b"data")
        exchange.failure().trap(error.NoProtocol)
        self.assertTrue(exchange.transport.disconnected)

    def test_factoryRaises(self) -> None:
        """
        A factory that raises fails the attempt with its exception.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy, Factory.forProtocol(ZeroDivisionProtocol))  # type: ignore[arg-type]
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK)
        exchange.failure().trap(ZeroDivisionError)
        self.assertTrue(exchange.transport.disconnected)

    def test_connectionMadeRaises(self) -> None:
        """
        An application whose C{connectionMade} raises fails the attempt with
        that exception (the L{Deferred} does not hang), the connection to the
        proxy is aborted and the application is told it is lost.
        """

        class Raising(RecordingProtocol):
            def connectionMade(self) -> None:
                super().connectionMade()
                raise ZeroDivisionError()

        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy, RecordingFactory(Raising))
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK + b"data")
        exchange.failure().trap(ZeroDivisionError)
        self.assertTrue(exchange.transport.disconnected)
        assert exchange.handshake is not None
        exchange.handshake.connectionLost(Failure(error.ConnectionAborted()))
        [app] = exchange.factory.built
        self.assertEqual(app.events, ["connectionMade", "connectionLost"])

    def test_pausedInCallback(self) -> None:
        """
        An application that pauses reading when the L{Deferred} fires gets
        the bytes that came with the reply only when it resumes.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)

        def pause(app: IProtocol) -> IProtocol:
            assert isinstance(app, RecordingProtocol)
            assert isinstance(app.transport, SOCKSTunnelTransport)
            app.transport.pauseProducing()
            return app

        exchange.deferred.addCallback(pause)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK + b"early")
        app = exchange.app()
        self.assertEqual(app.received, [])
        self.assertEqual(exchange.transport.producerState, "paused")
        app.transport.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(app.received, [b"early"])
        self.assertEqual(exchange.transport.producerState, "producing")

    def test_closedInCallback(self) -> None:
        """
        An application that closes the connection when the L{Deferred} fires
        gets no more bytes, as with TCP.
        """
        endpoint, proxy, _ = socks5()
        exchange = Exchange(endpoint, proxy)

        def close(app: IProtocol) -> IProtocol:
            assert isinstance(app, RecordingProtocol)
            assert app.transport is not None
            app.transport.loseConnection()
            return app

        exchange.deferred.addCallback(close)
        exchange.connectProxy()
        exchange.receive(SELECT_NOAUTH + REPLY_OK + b"early")
        self.assertEqual(exchange.app().received, [])
        self.assertTrue(exchange.transport.disconnecting)


class ZeroDivisionProtocol(Protocol):
    """
    A protocol that cannot be built.
    """

    def __init__(self) -> None:
        1 / 0  # noqa: B018


class DefaultReactorTests(SynchronousTestCase):
    """
    Without a reactor argument, the global reactor is used, imported only
    when connecting.
    """

    def test_globalReactor(self) -> None:
        """
        The timeout is scheduled on the global reactor; nothing is imported
        when the endpoint is made.
        """
        from twisted.internet import reactor

        proxy = FakeProxyEndpoint()
        endpoint = SOCKS5ClientEndpoint("example.com", 80, proxy, handshakeTimeout=50)
        exchange = Exchange(endpoint, proxy)
        before = set(reactor.getDelayedCalls())
        exchange.connectProxy()
        new = set(reactor.getDelayedCalls()) - before
        self.assertEqual(len(new), 1)
        exchange.deferred.cancel()
        self.assertFalse(any(call.active() for call in new))
        exchange.failure().trap(error.ConnectingCancelledError)
