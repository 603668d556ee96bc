# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
The client endpoints against our own server (L{SOCKSServerFactory}) over
loopback TCP: every version and authentication combination, refusals,
chaining through two servers, TLS and half-close through the tunnel, the
HTTP agent, endpoint strings found by a real plugin scan, and large
transfers.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import error, ssl
from twisted.internet.address import HostnameAddress, IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    clientFromString,
    wrapClientTLS,
    wrapServerTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.trial.unittest import SkipTest
from twisted.web.client import BrowserLikePolicyForHTTPS, HTTPConnectionPool, readBody
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from socks_twisted import errors
from socks_twisted.client import (
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    SOCKSTunnelTransport,
    socksAgent,
)

from ._loopback import (
    LOOPBACK,
    CertificateAuthority,
    EchoFactory,
    ProxyTestCase,
    asyncTest,
    connectCollector,
    listen,
    listenEcho,
    reactor,
    roundTrip,
    startOurServer,
    waitUntil,
    withTimeout,
)
from ._plugins import ensureProjectPlugins

try:
    from socks_twisted.server import SOCKSServerFactory
except ImportError as e:  # pragma: no cover - only before the server lands
    if os.environ.get("CI") == "true":
        raise
    SOCKSServerFactory = None  # type: ignore[assignment, misc]
    _NO_SERVER = f"socks_twisted.server is not importable: {e}"
else:
    _NO_SERVER = ""

USER = b"alice"
PASSWORD = b"s3cret-Pa55"


def makePortal() -> Portal:
    """
    A portal that knows L{USER} with L{PASSWORD}.
    """
    checker = InMemoryUsernamePasswordDatabaseDontUse(**{USER.decode(): PASSWORD})
    try:
        from socks_twisted.auth import portalFor
    except ImportError:  # pragma: no cover
        from zope.interface import Interface

        class Realm:
            def requestAvatar(
                self, avatarId: object, mind: object, *ifaces: Any
            ) -> Any:
                return Interface, object(), lambda: None

        return Portal(Realm(), [checker])  # type: ignore[arg-type]
    return portalFor([checker])


class OurServerTestCase(ProxyTestCase):
    """
    Starts our SOCKS server and an echo server on loopback.
    """

    timeout = 60

    def setUp(self) -> None:
        if _NO_SERVER:
            raise SkipTest(_NO_SERVER)

    async def startServer(self, **kwargs: Any) -> tuple[int, Any]:
        """
        Start our server; see L{startOurServer}.
        """
        return await startOurServer(self, **kwargs)

    def proxy(self, port: int) -> IStreamClientEndpoint:
        """
        The endpoint of a proxy on loopback C{port}.
        """
        return TCP4ClientEndpoint(reactor, LOOPBACK, port)

    async def checkHalfClose(self, endpoint: IStreamClientEndpoint) -> None:
        """
        Send, half-close, and get the echo and the server's C{[EOF]} answer
        before end-of-file and the close.
        """
        client = await connectCollector(self, endpoint)
        assert client.transport is not None
        client.transport.write(b"before eof")
        client.transport.loseWriteConnection()  # type: ignore[attr-defined]
        await withTimeout(client.lost, "the close")
        self.assertEqual(client.received, b"before eof[EOF]")
        self.assertEqual(
            client.events,
            ["writeConnectionLost", "readConnectionLost", "connectionLost"],
        )


class VersionsAndAuthTests(OurServerTestCase):
    """
    SOCKS5 with and without username/password, SOCKS4 and SOCKS4a, to IP
    and name targets.
    """

    @asyncTest
    async def test_socks5NoAuth(self) -> None:
        """
        SOCKS5 without authentication to an IPv4 literal and to a name; the
        peer is the target and the BND address is the server's outgoing
        address.
        """
        echo, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        client = await roundTrip(
            self,
            SOCKS5ClientEndpoint(LOOPBACK, echoPort, self.proxy(port), reactor=reactor),
            b"hello v5",
        )
        assert isinstance(client.transport, SOCKSTunnelTransport)
        self.assertEqual(
            client.transport.getPeer(), IPv4Address("TCP", LOOPBACK, echoPort)
        )
        bound = client.transport.proxyBoundAddress
        self.assertIsInstance(bound, IPv4Address)
        assert isinstance(bound, IPv4Address)
        self.assertEqual(echo.peers[-1], IPv4Address("TCP", LOOPBACK, bound.port))
        named = await roundTrip(
            self,
            SOCKS5ClientEndpoint(
                "localhost", echoPort, self.proxy(port), reactor=reactor
            ),
            b"hello name",
        )
        assert named.transport is not None
        self.assertEqual(
            named.transport.getPeer(), HostnameAddress(b"localhost", echoPort)
        )

    @asyncTest
    async def test_socks5ResolveLocally(self) -> None:
        """
        SOCKS5 with a locally resolved name works, and reports the address.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        client = await roundTrip(
            self,
            SOCKS5ClientEndpoint(
                "localhost",
                echoPort,
                self.proxy(port),
                resolveLocally=True,
                reactor=reactor,
            ),
            b"resolved here",
        )
        assert client.transport is not None
        self.assertIsInstance(client.transport.getPeer(), IPv4Address | IPv6Address)

    @asyncTest
    async def test_socks5UsernamePassword(self) -> None:
        """
        SOCKS5 with the right username and password works, with methods
        offered in either order.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer(portal=makePortal())
        for methods in ((0, 2), (2, 0), (2,)):
            await roundTrip(
                self,
                SOCKS5ClientEndpoint(
                    LOOPBACK,
                    echoPort,
                    self.proxy(port),
                    credentials=(USER, PASSWORD),
                    methods=methods,
                    reactor=reactor,
                ),
                b"authenticated",
            )

    @asyncTest
    async def test_socks5WrongPassword(self) -> None:
        """
        A wrong password fails with L{errors.AuthenticationFailedError}.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer(portal=makePortal())
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                self.proxy(port),
                credentials=(USER, b"wrong"),
                reactor=reactor,
            ),
            errors.AuthenticationFailedError,
        )

    @asyncTest
    async def test_socks5NoCredentials(self) -> None:
        """
        Without credentials, a server that requires them selects no method:
        L{errors.NoAcceptableMethodsError}.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer(portal=makePortal())
        await self.assertFails(
            SOCKS5ClientEndpoint(LOOPBACK, echoPort, self.proxy(port), reactor=reactor),
            errors.NoAcceptableMethodsError,
        )

    @asyncTest
    async def test_socks4(self) -> None:
        """
        SOCKS4 to an IPv4 literal, with and without a user ID, and with a
        locally resolved name.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        for userID in (b"", b"fred"):
            client = await roundTrip(
                self,
                SOCKS4ClientEndpoint(
                    LOOPBACK, echoPort, self.proxy(port), userID=userID, reactor=reactor
                ),
                b"hello v4",
            )
            assert client.transport is not None
            self.assertEqual(
                client.transport.getPeer(), IPv4Address("TCP", LOOPBACK, echoPort)
            )
        await roundTrip(
            self,
            SOCKS4ClientEndpoint(
                "localhost",
                echoPort,
                self.proxy(port),
                resolveLocally=True,
                reactor=reactor,
            ),
            b"hello v4 resolved",
        )

    @asyncTest
    async def test_socks4a(self) -> None:
        """
        SOCKS4a sends the name for the server to resolve.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        client = await roundTrip(
            self,
            SOCKS4ClientEndpoint(
                "localhost", echoPort, self.proxy(port), reactor=reactor
            ),
            b"hello v4a",
        )
        assert client.transport is not None
        self.assertEqual(
            client.transport.getPeer(), HostnameAddress(b"localhost", echoPort)
        )

    @asyncTest
    async def test_socks4WithAuthServer(self) -> None:
        """
        A server with a portal refuses SOCKS4 (reply 91) unless told to
        allow it.
        """
        _, echoPort = await listenEcho(self)
        strict, _ = await self.startServer(portal=makePortal())
        await self.assertFails(
            SOCKS4ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(strict), reactor=reactor
            ),
            errors.SOCKS4RejectedError,
        )
        lenient, _ = await self.startServer(
            portal=makePortal(), allowSOCKS4WithAuth=True
        )
        await roundTrip(
            self,
            SOCKS4ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(lenient), reactor=reactor
            ),
            b"allowed",
        )

    @asyncTest
    async def test_ipv6Target(self) -> None:
        """
        SOCKS5 to an IPv6 literal (the full 16 bytes) reaches an echo server
        on C{::1}.
        """
        if not socket.has_ipv6:
            raise SkipTest("no IPv6 on this host")
        try:
            _, echoPort = await listenEcho(self, "::1")
        except error.CannotListenError as e:
            raise SkipTest(f"cannot listen on ::1: {e}") from e
        port, _ = await self.startServer()
        client = await roundTrip(
            self,
            SOCKS5ClientEndpoint("::1", echoPort, self.proxy(port), reactor=reactor),
            b"hello six",
        )
        assert client.transport is not None
        self.assertEqual(
            client.transport.getPeer(), IPv6Address("TCP", "::1", echoPort)
        )


class RefusalTests(OurServerTestCase):
    """
    Targets the server cannot reach give the right errors.
    """

    @asyncTest
    async def test_socks5Refused(self) -> None:
        """
        A closed port gives REP 5: L{errors.ConnectionRefusedError}, which
        is Twisted's L{error.ConnectionRefusedError} too.
        """
        port, _ = await self.startServer()
        closed = await self.closedPort()
        e = await self.assertFails(
            SOCKS5ClientEndpoint(LOOPBACK, closed, self.proxy(port), reactor=reactor),
            errors.SOCKSError,
        )
        self.assertIsInstance(e, errors.ConnectionRefusedError)
        self.assertIsInstance(e, error.ConnectionRefusedError)

    @asyncTest
    async def test_socks4Refused(self) -> None:
        """
        A closed port gives SOCKS4 reply 91.
        """
        port, _ = await self.startServer()
        closed = await self.closedPort()
        await self.assertFails(
            SOCKS4ClientEndpoint(LOOPBACK, closed, self.proxy(port), reactor=reactor),
            errors.SOCKS4RejectedError,
        )

    @asyncTest
    async def test_unresolvable(self) -> None:
        """
        A name that does not resolve gives a SOCKS reply error.
        """
        port, _ = await self.startServer()
        await self.assertFails(
            SOCKS5ClientEndpoint(
                "does-not-exist.invalid", 80, self.proxy(port), reactor=reactor
            ),
            errors.SOCKSReplyError,
        )

    @asyncTest
    async def test_proxyDown(self) -> None:
        """
        A proxy that is not there: Twisted's error for the proxy connection.
        """
        closed = await self.closedPort()
        await self.assertFails(
            SOCKS5ClientEndpoint(LOOPBACK, 80, self.proxy(closed), reactor=reactor),
            error.ConnectionRefusedError,
        )

    @asyncTest
    async def test_silentProxy(self) -> None:
        """
        A proxy that accepts and never answers hits the handshake timeout;
        one that closes at once is a protocol error.
        """
        silent = await listen(self, ServerFactory.forProtocol(Protocol))
        e = await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                80,
                self.proxy(silent.getHost().port),  # type: ignore[attr-defined]
                handshakeTimeout=0.3,
                reactor=reactor,
            ),
            error.TimeoutError,
        )
        self.assertIn("0.3 seconds", str(e))

        class Closer(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.loseConnection()

        closer = await listen(self, ServerFactory.forProtocol(Closer))
        e = await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                80,
                self.proxy(closer.getHost().port),  # type: ignore[attr-defined]
                reactor=reactor,
            ),
            errors.SOCKSProtocolError,
        )
        self.assertIn("method selection", str(e))

    async def cancelWhileDialling(self) -> tuple[Any, list[Deferred[Any]]]:
        """
        Start a server whose outgoing connections never complete, connect
        through it, and cancel once it dials.

        @return: The server's factory and its pending dials.
        """
        dialling: list[Deferred[Any]] = []

        @implementer(IStreamClientEndpoint)
        class Stuck:
            def connect(self, factory: object) -> Deferred[Any]:
                d: Deferred[Any] = Deferred()
                dialling.append(d)
                return d

        port, factory = await self.startServer(
            endpointFor=lambda host, port, timeout: Stuck(), connectTimeout=3
        )
        d = SOCKS5ClientEndpoint(
            LOOPBACK, 9, self.proxy(port), reactor=reactor
        ).connect(Factory.forProtocol(Protocol))
        await waitUntil(lambda: bool(dialling), "the server to dial")
        d.cancel()
        with self.assertRaises(error.ConnectingCancelledError):
            await d
        return factory, dialling

    @asyncTest
    async def test_cancelWhileServerDials(self) -> None:
        """
        Cancelling while the server is still trying to reach the target
        fails with L{error.ConnectingCancelledError} at once.
        """
        await self.cancelWhileDialling()

    @asyncTest
    async def test_cancelStopsServerDialling(self) -> None:
        """
        The cancelled client's connection is aborted, so the server should
        give up its outgoing attempt and end the session within a second,
        not at its C{connectTimeout}.
        """
        factory, dialling = await self.cancelWhileDialling()
        await waitUntil(lambda: dialling[0].called, "the server to stop dialling", 1.0)
        self.assertEqual(factory.sessions, set())


class ChainingTests(OurServerTestCase):
    """
    A SOCKS endpoint can lead to another proxy.
    """

    @asyncTest
    async def test_twoServers(self) -> None:
        """
        SOCKS5 through SOCKS4a through SOCKS5 ... every pairing of versions
        through two of our servers reaches the echo server, and both servers
        carry a session while it is open.
        """
        _, echoPort = await listenEcho(self)
        first, firstFactory = await self.startServer()
        second, secondFactory = await self.startServer(portal=makePortal())
        toSecondVia5 = SOCKS5ClientEndpoint(
            LOOPBACK, second, self.proxy(first), reactor=reactor
        )
        toSecondVia4a = SOCKS4ClientEndpoint(
            "localhost", second, self.proxy(first), reactor=reactor
        )
        for hop in (toSecondVia5, toSecondVia4a):
            client = await roundTrip(
                self,
                SOCKS5ClientEndpoint(
                    LOOPBACK,
                    echoPort,
                    hop,
                    credentials=(USER, PASSWORD),
                    reactor=reactor,
                ),
                b"through two",
            )
            self.assertEqual(len(firstFactory.sessions), 1)
            self.assertEqual(len(secondFactory.sessions), 1)
            assert isinstance(client.transport, SOCKSTunnelTransport)
            self.assertIsInstance(client.transport.proxyTransport, SOCKSTunnelTransport)
            await client.close()
            await waitUntil(
                lambda: not firstFactory.sessions and not secondFactory.sessions,
                "both sessions to end",
            )

    @asyncTest
    async def test_chainFailures(self) -> None:
        """
        A failure at either hop is reported as that hop's error: the first
        server cannot reach the second (refused), or the second refuses our
        password.
        """
        _, echoPort = await listenEcho(self)
        first, _ = await self.startServer()
        second, _ = await self.startServer(portal=makePortal())
        closed = await self.closedPort()
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                SOCKS5ClientEndpoint(
                    LOOPBACK, closed, self.proxy(first), reactor=reactor
                ),
                reactor=reactor,
            ),
            errors.ConnectionRefusedError,
        )
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                SOCKS5ClientEndpoint(
                    LOOPBACK, second, self.proxy(first), reactor=reactor
                ),
                credentials=(USER, b"wrong"),
                reactor=reactor,
            ),
            errors.AuthenticationFailedError,
        )

    @asyncTest
    async def test_halfCloseThroughChain(self) -> None:
        """
        Half-close crosses two tunnels.
        """
        _, echoPort = await listenEcho(self)
        first, _ = await self.startServer()
        second, _ = await self.startServer()
        endpoint = SOCKS5ClientEndpoint(
            LOOPBACK,
            echoPort,
            SOCKS5ClientEndpoint(LOOPBACK, second, self.proxy(first), reactor=reactor),
            reactor=reactor,
        )
        await self.checkHalfClose(endpoint)


class HalfCloseTests(OurServerTestCase):
    """
    Half-close through one tunnel.
    """

    @asyncTest
    async def test_halfClose(self) -> None:
        """
        The client half-closes; the target sees end-of-file, answers, and
        closes; the client gets all bytes, then end-of-file.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        for endpoint in (
            SOCKS5ClientEndpoint(LOOPBACK, echoPort, self.proxy(port), reactor=reactor),
            SOCKS4ClientEndpoint(LOOPBACK, echoPort, self.proxy(port), reactor=reactor),
        ):
            await self.checkHalfClose(endpoint)


class BulkTests(OurServerTestCase):
    """
    Large transfers keep every byte in order.
    """

    @asyncTest
    async def test_fourMegabytes(self) -> None:
        """
        4 MiB out and back through the tunnel arrive intact.
        """
        echo, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        payload = os.urandom(4 * 1024 * 1024)
        await roundTrip(
            self,
            SOCKS5ClientEndpoint(LOOPBACK, echoPort, self.proxy(port), reactor=reactor),
            payload,
        )
        self.assertEqual(echo.received, payload)


class TLSTests(OurServerTestCase):
    """
    TLS to the target through the tunnel, verified against a certificate
    authority made in the test.
    """

    async def startTLSEcho(self, authority: CertificateAuthority) -> int:
        """
        An echo server behind TLS with the authority's server certificate.
        """
        from twisted.internet.endpoints import TCP4ServerEndpoint

        options = ssl.PrivateCertificate.loadPEM(authority.serverPEM).options()
        endpoint = wrapServerTLS(
            options, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
        )
        echo = EchoFactory()
        port = await endpoint.listen(echo)
        self.addCleanup(port.stopListening)

        async def closed() -> None:
            await waitUntil(lambda: not echo.open, "the TLS echo connections")

        self.addCleanup(lambda: ensureDeferred(closed()))
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number

    @asyncTest
    async def test_wrapClientTLS(self) -> None:
        """
        C{wrapClientTLS(optionsForClientTLS(host), socksEndpoint)} verifies
        the target's certificate and carries bytes, and a handshake listener
        under TLS hears about it.
        """
        authority = CertificateAuthority()
        tlsPort = await self.startTLSEcho(authority)
        port, _ = await self.startServer()
        trust = ssl.Certificate.loadPEM(authority.caPEM)
        for socksEndpoint in (
            SOCKS5ClientEndpoint(LOOPBACK, tlsPort, self.proxy(port), reactor=reactor),
            SOCKS4ClientEndpoint(LOOPBACK, tlsPort, self.proxy(port), reactor=reactor),
        ):
            endpoint = wrapClientTLS(
                ssl.optionsForClientTLS("tls.test", trustRoot=trust), socksEndpoint
            )
            client = await roundTrip(self, endpoint, b"secret over tls")
            assert client.transport is not None
            self.assertEqual(
                client.transport.getPeer(), IPv4Address("TCP", LOOPBACK, tlsPort)
            )

    @asyncTest
    async def test_tlsToTheProxy(self) -> None:
        """
        The proxy can itself be reached over TLS; the tunnel's transport
        still reports the target and does not claim to be TLS (the
        certificate is the proxy's).
        """
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.interfaces import ISSLTransport

        authority = CertificateAuthority()
        _, echoPort = await listenEcho(self)
        factory = SOCKSServerFactory(reactor)
        options = ssl.PrivateCertificate.loadPEM(authority.serverPEM).options()
        port = await wrapServerTLS(
            options, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
        ).listen(factory)
        self.addCleanup(port.stopListening)

        async def drained() -> None:
            await waitUntil(lambda: not factory.sessions, "the SOCKS sessions to end")

        self.addCleanup(lambda: ensureDeferred(drained()))
        trust = ssl.Certificate.loadPEM(authority.caPEM)
        proxy = wrapClientTLS(
            ssl.optionsForClientTLS("tls.test", trustRoot=trust),
            TCP4ClientEndpoint(reactor, LOOPBACK, port.getHost().port),  # type: ignore[attr-defined]
        )
        client = await roundTrip(
            self,
            SOCKS5ClientEndpoint(LOOPBACK, echoPort, proxy, reactor=reactor),
            b"socks over tls",
        )
        assert isinstance(client.transport, SOCKSTunnelTransport)
        self.assertTrue(ISSLTransport.providedBy(client.transport.proxyTransport))
        self.assertFalse(ISSLTransport.providedBy(client.transport))
        self.assertEqual(
            client.transport.getPeer(), IPv4Address("TCP", LOOPBACK, echoPort)
        )

    @asyncTest
    async def test_wrongName(self) -> None:
        """
        A certificate for another name is refused through the tunnel too.
        """
        authority = CertificateAuthority()
        tlsPort = await self.startTLSEcho(authority)
        port, _ = await self.startServer()
        trust = ssl.Certificate.loadPEM(authority.caPEM)
        endpoint = wrapClientTLS(
            ssl.optionsForClientTLS("other.test", trustRoot=trust),
            SOCKS5ClientEndpoint(LOOPBACK, tlsPort, self.proxy(port), reactor=reactor),
        )
        client = await connectCollector(self, endpoint)
        assert client.transport is not None
        client.transport.write(b"must not arrive")
        await withTimeout(client.lost, "the TLS failure")
        self.assertEqual(client.received, b"")
        from service_identity.exceptions import VerificationError

        assert client.reason is not None
        self.assertTrue(client.reason.check(VerificationError), client.reason)


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        peer = request.getClientAddress()
        assert isinstance(peer, IPv4Address)
        return b"hello " + request.uri + b" from " + str(peer.port).encode()


class AgentTests(OurServerTestCase):
    """
    HTTP and HTTPS through our server with L{socksAgent}.
    """

    async def startWeb(self, authority: CertificateAuthority | None) -> int:
        """
        A L{Site} on loopback, with TLS if C{authority} is given.
        """
        from twisted.internet.endpoints import TCP4ServerEndpoint

        site = Site(_Hello())
        endpoint: Any = TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
        if authority is not None:
            options = ssl.PrivateCertificate.loadPEM(authority.serverPEM).options()
            endpoint = wrapServerTLS(options, endpoint)
        port = await endpoint.listen(site)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    def pool(self) -> HTTPConnectionPool:
        """
        A persistent pool closed at cleanup.
        """
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        return pool

    @asyncTest
    async def test_http(self) -> None:
        """
        An HTTP request reaches the site through the proxy (the site sees the
        server's address, not ours), and a second request reuses the pooled
        tunnel.
        """
        webPort = await self.startWeb(None)
        port, factory = await self.startServer()
        agent = socksAgent(reactor, self.proxy(port), pool=self.pool())
        for path in (b"/one", b"/two"):
            response = await withTimeout(
                agent.request(b"GET", b"http://127.0.0.1:%d%s" % (webPort, path)),
                "the response",
            )
            self.assertEqual(response.code, 200)
            body = await withTimeout(readBody(response), "the body")
            self.assertTrue(body.startswith(b"hello " + path), body)
            self.assertEqual(len(factory.sessions), 1)

    @asyncTest
    async def test_httpSOCKS4AndAuth(self) -> None:
        """
        The agent speaks SOCKS4a to a name, and SOCKS5 with credentials.
        """
        webPort = await self.startWeb(None)
        plain, _ = await self.startServer()
        guarded, _ = await self.startServer(portal=makePortal())
        agents = [
            socksAgent(reactor, self.proxy(plain), version=4, pool=self.pool()),
            socksAgent(
                reactor,
                self.proxy(guarded),
                credentials=(USER, PASSWORD),
                pool=self.pool(),
            ),
        ]
        for agent in agents:
            response = await withTimeout(
                agent.request(b"GET", b"http://localhost:%d/x" % (webPort,)),
                "the response",
            )
            body = await withTimeout(readBody(response), "the body")
            self.assertTrue(body.startswith(b"hello /x"), body)

    @asyncTest
    async def test_https(self) -> None:
        """
        An HTTPS request is verified against the test authority through the
        tunnel; a policy that does not trust it fails.
        """
        authority = CertificateAuthority()
        webPort = await self.startWeb(authority)
        port, _ = await self.startServer()
        trusting = BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(authority.caPEM)
        )
        agent = socksAgent(
            reactor, self.proxy(port), contextFactory=trusting, pool=self.pool()
        )
        url = b"https://127.0.0.1:%d/secure" % (webPort,)
        response = await withTimeout(agent.request(b"GET", url), "the response")
        body = await withTimeout(readBody(response), "the body")
        self.assertTrue(body.startswith(b"hello /secure"), body)

        distrusting = socksAgent(reactor, self.proxy(port), pool=self.pool())
        from twisted.web._newclient import ResponseNeverReceived

        with self.assertRaises(ResponseNeverReceived):
            await withTimeout(distrusting.request(b"GET", url), "the failure")

    @asyncTest
    async def test_ownPool(self) -> None:
        """
        Without a pool argument each agent gets a new persistent pool.
        """
        port, _ = await self.startServer()
        first = socksAgent(reactor, self.proxy(port))
        second = socksAgent(reactor, self.proxy(port))
        self.assertIsNot(first._pool, second._pool)
        self.assertTrue(first._pool.persistent)


class EndpointStringTests(OurServerTestCase):
    """
    Endpoint strings, parsed by the plugins a real plugin scan finds, work
    against our server.
    """

    def setUp(self) -> None:
        super().setUp()
        ensureProjectPlugins(self)

    @asyncTest
    async def test_strings(self) -> None:
        """
        C{socks5:}, C{socks5:} with credentials, C{socks4a:}, C{socks4:}, a
        keyword form, an escaped IPv6 address and a chain all connect.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        guarded, _ = await self.startServer(portal=makePortal())
        proxy = f"proxy=tcp\\:127.0.0.1\\:{port}"
        descriptions = [
            f"socks5:127.0.0.1:{echoPort}:{proxy}",
            f"socks5:localhost:{echoPort}:proxy=tcp\\:127.0.0.1\\:{guarded}"
            f":username={USER.decode()}:password={PASSWORD.decode()}",
            f"socks4a:localhost:{echoPort}:{proxy}:userID=fred",
            f"socks4:localhost:{echoPort}:{proxy}",
            f"socks5:host=127.0.0.1:port={echoPort}:{proxy}:handshakeTimeout=5",
            # Through the open server to the guarded one, which wants the
            # outer endpoint's credentials.
            f"socks5:127.0.0.1:{echoPort}:username={USER.decode()}"
            f":password={PASSWORD.decode()}"
            f":proxy=socks5\\:127.0.0.1\\:{guarded}"
            f"\\:proxy=tcp\\\\\\:127.0.0.1\\\\\\:{port}",
        ]
        for description in descriptions:
            endpoint = clientFromString(reactor, description)
            client = await roundTrip(self, endpoint, description.encode())
            await client.close()

    @asyncTest
    async def test_ipv6String(self) -> None:
        """
        An IPv6 target with escaped colons.
        """
        if not socket.has_ipv6:
            raise SkipTest("no IPv6 on this host")
        try:
            _, echoPort = await listenEcho(self, "::1")
        except error.CannotListenError as e:
            raise SkipTest(f"cannot listen on ::1: {e}") from e
        port, _ = await self.startServer()
        endpoint = clientFromString(
            reactor, f"socks5:\\:\\:1:{echoPort}:proxy=tcp\\:127.0.0.1\\:{port}"
        )
        client = await roundTrip(self, endpoint, b"six")
        assert client.transport is not None
        self.assertEqual(
            client.transport.getPeer(), IPv6Address("TCP", "::1", echoPort)
        )
