# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
L{SOCKSProxy}: made from URLs, the environment and endpoints, and its
clients through our own server, microsocks and Dante on loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, cast
from urllib.parse import quote

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import HostnameAddress, IPv4Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web.client import Agent, readBody
from twisted.web.server import Site

import tests.client.test_bind as bindtests
import tests.client.test_udp as udptests
from socks_twisted import errors
from socks_twisted.client import (
    AuthMethod,
    ISOCKSReactor,
    SOCKS4BindClient,
    SOCKS4ClientEndpoint,
    SOCKS5BindClient,
    SOCKS5ClientEndpoint,
    SOCKSProxy,
    SOCKSTunnelTransport,
)
from socks_twisted.client._endpoints import socks5Authentication
from tests.interop._thirdparty import (
    MICROSOCKS_PASSWORD,
    MICROSOCKS_USER,
    startDante,
    startMicrosocks,
)

from ._loopback import (
    LOOPBACK,
    ProxyTestCase,
    asyncTest,
    listen,
    listenEcho,
    reactor,
    roundTrip,
    startOurServer,
    withTimeout,
)

_reactor = cast(ISOCKSReactor, reactor)

#: A password with a space, "+", "/" and a non-ASCII letter.
PASSWORD = "p a+s/sü"
USER = "alice"


def socksURL(scheme: str, port: int, user: str = USER, password: str = PASSWORD) -> str:
    """
    A URL for a proxy on loopback C{port}, the userinfo percent-encoded.
    """
    return (
        f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{LOOPBACK}:{port}"
    )


class ConstructionTests(SynchronousTestCase):
    """
    What a L{SOCKSProxy} is made of, and the errors raised when it is made.
    """

    def test_fromURLSOCKS5h(self) -> None:
        """
        socks5h: SOCKS5, names to the proxy, credentials decoded; the proxy
        is reached with a L{HostnameEndpoint}; the repr hides the password.
        """
        proxy = SOCKSProxy.fromURL(_reactor, "socks5h://alice:s3cret@127.0.0.1:1080")
        self.assertEqual((proxy.version, proxy.resolveLocally), (5, False))
        self.assertIsInstance(proxy.proxyEndpoint, HostnameEndpoint)
        self.assertEqual(repr(proxy), "<SOCKSProxy socks5h://127.0.0.1:1080>")
        endpoint = proxy.endpoint("example.com", 443)
        assert isinstance(endpoint, SOCKS5ClientEndpoint)
        self.assertEqual(endpoint._credentials.password, b"s3cret")  # type: ignore[union-attr]
        self.assertEqual(endpoint._credentials.username, b"alice")  # type: ignore[union-attr]
        self.assertFalse(endpoint._resolveLocally)
        self.assertIs(endpoint._proxyEndpoint, proxy.proxyEndpoint)

    def test_schemes(self) -> None:
        """
        Each scheme makes the right endpoint with the right resolution.
        """
        for scheme, cls, local in [
            ("socks5", SOCKS5ClientEndpoint, True),
            ("socks5h", SOCKS5ClientEndpoint, False),
            ("socks4", SOCKS4ClientEndpoint, True),
            ("socks4a", SOCKS4ClientEndpoint, False),
        ]:
            proxy = SOCKSProxy.fromURL(_reactor, f"{scheme}://[::1]")
            endpoint = proxy.endpoint("example.com", 80)
            self.assertIsInstance(endpoint, cls)
            self.assertEqual(endpoint._resolveLocally, local)  # type: ignore[attr-defined]
            assert proxy.url is not None
            self.assertEqual((proxy.url.host, proxy.url.port), ("::1", 1080))
            self.assertEqual(repr(proxy), f"<SOCKSProxy {scheme}://[::1]:1080>")

    def test_socks4UserID(self) -> None:
        """
        The user of a SOCKS4 URL is its user ID.
        """
        proxy = SOCKSProxy.fromURL(_reactor, "socks4a://j%C3%BCrgen@h")
        endpoint = proxy.endpoint("example.com", 80)
        assert isinstance(endpoint, SOCKS4ClientEndpoint)
        self.assertEqual(endpoint._userID, "jürgen".encode())

    def test_userWithoutPassword(self) -> None:
        """
        A SOCKS5 user without a password sends an empty password.
        """
        proxy = SOCKSProxy.fromURL(_reactor, "socks5h://alice@h")
        endpoint = proxy.endpoint("example.com", 80)
        assert isinstance(endpoint, SOCKS5ClientEndpoint)
        self.assertEqual(endpoint._credentials.password, b"")  # type: ignore[union-attr]

    def test_errors(self) -> None:
        """
        A bad URL, or fields that cannot be sent, fail when the proxy is
        made.
        """
        for url, words in [
            ("ftp://h", "unknown proxy scheme"),
            ("socks5://", "no host"),
            ("socks5://h:99999", "bad port"),
            ("socks4://u:p@h", "no password"),
            ("socks5h://" + "u" * 256 + ":p@h", "RFC 1929"),
        ]:
            with self.assertRaises(ValueError, msg=url) as caught:
                SOCKSProxy.fromURL(_reactor, url)
            self.assertIn(words, str(caught.exception))

    def test_constructorErrors(self) -> None:
        """
        The constructor checks the version and the options that belong to
        it.
        """
        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, 1080)
        self.assertRaises(ValueError, SOCKSProxy, _reactor, endpoint, version=3)
        self.assertRaises(
            ValueError,
            SOCKSProxy,
            _reactor,
            endpoint,
            version=4,
            credentials=("a", "b"),
        )
        self.assertRaises(ValueError, SOCKSProxy, _reactor, endpoint, userID="x")
        self.assertRaises(
            ValueError,
            SOCKSProxy,
            _reactor,
            endpoint,
            methods=[AuthMethod.USERNAME_PASSWORD],
        )

    def test_fromEndpoint(self) -> None:
        """
        Any endpoint leads to the proxy (TLS, UNIX, another proxy).
        """
        first = SOCKSProxy.fromURL(_reactor, "socks5h://h")
        chained = SOCKSProxy(
            _reactor,
            first.endpoint("10.0.0.2", 1080),
            version=4,
            userID="bob",
        )
        endpoint = chained.endpoint("192.0.2.1", 80)
        assert isinstance(endpoint, SOCKS4ClientEndpoint)
        self.assertIsInstance(endpoint._proxyEndpoint, SOCKS5ClientEndpoint)
        self.assertIsNone(chained.url)
        self.assertIn("SOCKS5ClientEndpoint", repr(chained))
        self.assertFalse(chained.bypasses("anything"))

    def test_udpNeedsSOCKS5(self) -> None:
        """
        SOCKS4 has no UDP.
        """
        proxy = SOCKSProxy.fromURL(_reactor, "socks4a://h")
        self.assertRaises(ValueError, proxy.udp, udptests.Receiver())

    def test_bindChecksTarget(self) -> None:
        """
        A BIND to a target SOCKS4 cannot carry is refused at once.
        """
        proxy = SOCKSProxy.fromURL(_reactor, "socks4a://h")
        self.assertRaises(ValueError, proxy.bind, Factory(), "::1")

    def test_agent(self) -> None:
        """
        C{agent()} is an L{Agent} with its own pool.
        """
        proxy = SOCKSProxy.fromURL(_reactor, "socks5h://h")
        first, second = proxy.agent(), proxy.agent()
        self.assertIsInstance(first, Agent)
        self.assertIsNot(first._pool, second._pool)


class FromEnvironmentTests(SynchronousTestCase):
    """
    L{SOCKSProxy.fromEnvironment}.
    """

    def test_unset(self) -> None:
        """
        No proxy variable: C{None}.
        """
        self.assertIsNone(SOCKSProxy.fromEnvironment(_reactor, {"NO_PROXY": "*"}))

    def test_mapping(self) -> None:
        """
        Any mapping; NO_PROXY becomes the bypass rules.
        """
        proxy = SOCKSProxy.fromEnvironment(
            _reactor,
            {
                "ALL_PROXY": "socks5h://alice:pw@127.0.0.1:1081",
                "no_proxy": "localhost,.intranet.example,10.0.0.0/8",
            },
        )
        assert proxy is not None
        assert proxy.url is not None
        self.assertEqual((proxy.url.scheme, proxy.url.port), ("socks5h", 1081))
        self.assertTrue(proxy.bypasses("intranet.example"))
        self.assertTrue(proxy.bypasses("www.intranet.example"))
        self.assertTrue(proxy.bypasses("10.2.3.4"))
        self.assertTrue(proxy.bypasses("LOCALHOST"))
        self.assertFalse(proxy.bypasses("example.com"))

    def test_schemeVariable(self) -> None:
        """
        https_proxy holding a SOCKS URL wins over ALL_PROXY; http_proxy for
        scheme "http".
        """
        environ = {
            "ALL_PROXY": "socks5://all",
            "https_proxy": "socks4a://secure",
            "http_proxy": "socks5h://plain",
        }
        for scheme, host in [("https", "secure"), ("http", "plain"), (None, "all")]:
            proxy = SOCKSProxy.fromEnvironment(_reactor, environ, scheme=scheme)
            assert proxy is not None and proxy.url is not None
            self.assertEqual(proxy.url.host, host)

    def test_osEnviron(self) -> None:
        """
        Without a mapping, L{os.environ} is read.
        """
        self.patch(os, "environ", {"all_proxy": "socks4://osenv"})
        proxy = SOCKSProxy.fromEnvironment(_reactor)
        assert proxy is not None and proxy.url is not None
        self.assertEqual(proxy.url.host, "osenv")

    def test_bad(self) -> None:
        """
        A bad URL is a L{ValueError}.
        """
        self.assertRaises(
            ValueError,
            SOCKSProxy.fromEnvironment,
            _reactor,
            {"ALL_PROXY": "socks5://:1"},
        )


class TxsocksxMethodsTests(SynchronousTestCase):
    """
    txsocksx's C{methods} mapping.
    """

    def test_anonymous(self) -> None:
        """
        C{{"anonymous": ()}} offers no authentication.
        """
        self.assertEqual(
            socks5Authentication({"anonymous": ()}, None),
            ((AuthMethod.NO_AUTHENTICATION,), None),
        )

    def test_login(self) -> None:
        """
        C{{"login": (user, password)}} offers username/password with those
        credentials, in the mapping's order.
        """
        methods, request = socks5Authentication(
            {"login": ("alice", "pw"), "anonymous": ()}, None
        )
        self.assertEqual(
            methods, (AuthMethod.USERNAME_PASSWORD, AuthMethod.NO_AUTHENTICATION)
        )
        assert request is not None
        self.assertEqual((request.username, request.password), (b"alice", b"pw"))

    def test_errors(self) -> None:
        """
        Unknown keys, malformed values and credentials given twice are
        refused.
        """
        for methods, credentials in [
            ({"gssapi": ()}, None),
            ({"anonymous": ("x",)}, None),
            ({"login": ("alice",)}, None),
            ({"login": ("alice", "pw")}, ("alice", "pw")),
            ({}, None),
        ]:
            self.assertRaises(
                ValueError,
                socks5Authentication,
                methods,
                credentials,
            )

    def test_onEveryClient(self) -> None:
        """
        The endpoint, the BIND client and the proxy accept the mapping.
        """
        proxyEndpoint = TCP4ClientEndpoint(reactor, LOOPBACK, 1080)
        SOCKS5ClientEndpoint("h", 1, proxyEndpoint, methods={"login": ("a", "b")})
        SOCKS5BindClient("0.0.0.0", 0, proxyEndpoint, methods={"anonymous": ()})
        SOCKSProxy(_reactor, proxyEndpoint, methods={"login": ("a", "b")})


def _ourPortal() -> Any:
    from socks_twisted.auth import portalFor

    checker = InMemoryUsernamePasswordDatabaseDontUse(
        **{USER: PASSWORD.encode("utf-8")}
    )
    return portalFor([checker])


class OurServerTests(ProxyTestCase):
    """
    Through our server on loopback: every scheme, a password that needs
    percent-encoding, the agent, BIND and UDP.
    """

    timeout = 60

    def setUp(self) -> None:
        try:
            import socks_twisted.server  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise SkipTest(f"socks_twisted.server is not importable: {e}") from e

    @asyncTest
    async def test_socks5hPassword(self) -> None:
        """
        socks5h with the password: the name goes to the server.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(_reactor, socksURL("socks5h", port))
        client = await roundTrip(
            self, proxy.endpoint("localhost", echoPort), b"x" * 999
        )
        assert isinstance(client.transport, SOCKSTunnelTransport)
        self.assertEqual(
            client.transport.getPeer(), HostnameAddress(b"localhost", echoPort)
        )

    @asyncTest
    async def test_socks5Password(self) -> None:
        """
        socks5 with the password, to an address.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(_reactor, socksURL("socks5", port))
        client = await roundTrip(self, proxy.endpoint(LOOPBACK, echoPort), b"hi")
        assert isinstance(client.transport, SOCKSTunnelTransport)
        self.assertEqual(
            client.transport.getPeer(), IPv4Address("TCP", LOOPBACK, echoPort)
        )

    @asyncTest
    async def test_wrongPassword(self) -> None:
        """
        A wrong password fails with L{errors.AuthenticationFailedError}.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(
            _reactor, socksURL("socks5h", port, password=PASSWORD[:-1])
        )
        await self.assertFails(
            proxy.endpoint(LOOPBACK, echoPort), errors.AuthenticationFailedError
        )

    @asyncTest
    async def test_socks4Schemes(self) -> None:
        """
        socks4 resolves "localhost" here (to an IPv4 address); socks4a sends
        it to the server.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await startOurServer(self)
        for scheme, expected in [
            ("socks4", IPv4Address("TCP", LOOPBACK, echoPort)),
            ("socks4a", HostnameAddress(b"localhost", echoPort)),
        ]:
            proxy = SOCKSProxy.fromURL(_reactor, f"{scheme}://bob@{LOOPBACK}:{port}")
            client = await roundTrip(self, proxy.endpoint("localhost", echoPort), b"4")
            assert isinstance(client.transport, SOCKSTunnelTransport)
            self.assertEqual(client.transport.getPeer(), expected)
            await client.close()

    @asyncTest
    async def test_overUNIXSocket(self) -> None:
        """
        A proxy made from an endpoint: our server on a UNIX socket, SOCKS5
        with the password, chained behind nothing but a path.
        """
        from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint

        from socks_twisted.server import SOCKSServerFactory

        _, echoPort = await listenEcho(self)
        directory = tempfile.mkdtemp(prefix="socks-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "proxy.sock")
        factory = SOCKSServerFactory(reactor, portal=_ourPortal())
        listening = await UNIXServerEndpoint(reactor, path).listen(factory)
        self.addCleanup(listening.stopListening)
        proxy = SOCKSProxy(
            _reactor,
            UNIXClientEndpoint(reactor, path),
            credentials=(USER, PASSWORD),
            noProxy="localhost:8080",
        )
        self.assertTrue(proxy.bypasses("localhost", 8080))
        self.assertFalse(proxy.bypasses("localhost", 80))
        client = await roundTrip(self, proxy.endpoint(LOOPBACK, echoPort), b"unix")
        await client.close()

    @asyncTest
    async def test_txsocksxLogin(self) -> None:
        """
        txsocksx's mapping authenticates against our server.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await startOurServer(self, portal=_ourPortal())
        endpoint = SOCKS5ClientEndpoint(
            LOOPBACK,
            echoPort,
            TCP4ClientEndpoint(reactor, LOOPBACK, port),
            methods={"login": (USER, PASSWORD)},
            reactor=reactor,
        )
        await roundTrip(self, endpoint, b"txsocksx")

    @asyncTest
    async def test_agentHTTP(self) -> None:
        """
        The agent's requests go through the proxy.
        """
        from tests.client.test_ourserver import _Hello

        web = await listen(self, Site(_Hello()))
        webPort = web.getHost().port  # type: ignore[attr-defined]
        port, factory = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(_reactor, socksURL("socks5h", port))
        agent = proxy.agent()
        self.addCleanup(agent._pool.closeCachedConnections)
        response = await withTimeout(
            agent.request(b"GET", b"http://127.0.0.1:%d/via" % (webPort,)),
            "the response",
        )
        self.assertEqual(response.code, 200)
        body = await withTimeout(readBody(response), "the body")
        self.assertTrue(body.startswith(b"hello /via"), body)
        self.assertEqual(len(factory.sessions), 1)


class _BindThrough:
    """
    Adapts L{SOCKSProxy.bind} to the C{bind(factory)} of the BIND tests.
    """

    def __init__(self, proxy: SOCKSProxy, host: str) -> None:
        self._proxy = proxy
        self._host = host

    def bind(self, factory: Any) -> Any:
        return self._proxy.bind(factory, self._host, 0)


class OurServerBindTests(bindtests.LoopbackBindTestCase):
    """
    BIND through the façade.
    """

    @asyncTest
    async def test_socks5(self) -> None:
        """
        SOCKS5 BIND with the password.
        """
        port, _ = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(_reactor, socksURL("socks5h", port))
        await self.exchange(cast(SOCKS5BindClient, _BindThrough(proxy, LOOPBACK)))

    @asyncTest
    async def test_socks4(self) -> None:
        """
        SOCKS4 BIND to any peer.
        """
        port, _ = await startOurServer(self)
        proxy = SOCKSProxy.fromURL(_reactor, f"socks4://bob@{LOOPBACK}:{port}")
        await self.exchange(cast(SOCKS4BindClient, _BindThrough(proxy, "0.0.0.0")))


class OurServerUDPTests(udptests.LoopbackUDPTestCase):
    """
    UDP through the façade.
    """

    @asyncTest
    async def test_roundTrips(self) -> None:
        """
        Datagrams by IP and by name, with the password.
        """
        port, _ = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(_reactor, socksURL("socks5h", port))
        receiver = udptests.Receiver()
        association = await withTimeout(proxy.udp(receiver), "the association")
        self.addCleanup(association.stopListening)
        await self.roundTrips(association, receiver, LOOPBACK, [b"one", b"two"])
        await self.roundTrips(association, receiver, "localhost", [b"named"])


class _FakeDNS(DatagramProtocol):
    """
    Answers every query for an A record with 192.0.2.7.
    """

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        query = dns.Message()
        query.fromStr(datagram)
        answer = dns.Message(id=query.id, answer=1)
        answer.queries = query.queries
        answer.answers = [
            dns.RRHeader(
                name=query.queries[0].name.name,
                payload=dns.Record_A("192.0.2.7"),
            )
        ]
        assert self.transport is not None
        self.transport.write(answer.toStr(), addr)


class DNSThroughUDPTests(ProxyTestCase):
    """
    C{twisted.names}' L{dns.DNSDatagramProtocol} through an association,
    querying a server by name.
    """

    timeout = 60

    @asyncTest
    async def test_queryByName(self) -> None:
        """
        With C{answersFromNames}, the answer to a query sent to
        C{("localhost", port)} is reported from that name and port, which
        the protocol checks; later answers from that address too.
        """
        server = reactor.listenUDP(0, _FakeDNS(), interface=LOOPBACK)
        self.addCleanup(server.stopListening)
        dnsPort = server.getHost().port
        port, _ = await startOurServer(self, portal=_ourPortal())
        proxy = SOCKSProxy.fromURL(_reactor, socksURL("socks5h", port))
        protocol = dns.DNSDatagramProtocol(controller=None, reactor=reactor)
        association = await withTimeout(
            proxy.udp(protocol, answersFromNames=True), "the association"
        )
        self.addCleanup(association.stopListening)
        for name in (b"example.com", b"example.org"):
            message = await withTimeout(
                protocol.query(("localhost", dnsPort), [dns.Query(name)], timeout=5),
                "the DNS answer",
            )
            self.assertEqual(message.answers[0].payload.dottedQuad(), "192.0.2.7")
        self.assertEqual(
            list(association._learnedNames.values()), [("localhost", dnsPort)]
        )

    def test_attribution(self) -> None:
        """
        Answers are attributed to a name only when exactly one name on that
        port is unmatched; off by default.
        """
        from socks_twisted.client import SOCKS5UDPAssociation

        association = SOCKS5UDPAssociation(
            DatagramProtocol(), ("127.0.0.1", 1), cast(Any, FakeControl()), True
        )
        association._rememberName("one.example", 53)
        association._rememberName("10.0.0.1", 53)
        self.assertEqual(
            association._reportedRemote("192.0.2.1", 53), ("one.example", 53)
        )
        self.assertEqual(
            association._reportedRemote("192.0.2.9", 54), ("192.0.2.9", 54)
        )
        association._rememberName("two.example", 53)
        association._rememberName("three.example", 53)
        self.assertEqual(
            association._reportedRemote("192.0.2.1", 53), ("one.example", 53)
        )
        self.assertEqual(
            association._reportedRemote("192.0.2.2", 53), ("192.0.2.2", 53)
        )
        plain = SOCKS5UDPAssociation(
            DatagramProtocol(), ("127.0.0.1", 1), cast(Any, FakeControl())
        )
        plain._rememberName("one.example", 53)
        self.assertEqual(plain._reportedRemote("192.0.2.1", 53), ("192.0.2.1", 53))


class FakeControl:
    """
    Enough of a control transport for L{SOCKS5UDPAssociation}.
    """

    proxyBoundAddress = None
    proxyAddress = None
    datagramProtection = None


class ThirdPartyTests(ProxyTestCase):
    """
    microsocks and Dante, reached through URLs.
    """

    timeout = 90

    async def start(self, starter: Any, **kwargs: Any) -> Any:
        return await deferToThread(starter, self, **kwargs)

    @asyncTest
    async def test_microsocksPassword(self) -> None:
        """
        microsocks with username/password from the URL.
        """
        _, echoPort = await listenEcho(self)
        server = await self.start(startMicrosocks, auth=True)
        url = socksURL("socks5h", server.port, MICROSOCKS_USER, MICROSOCKS_PASSWORD)
        proxy = SOCKSProxy.fromURL(_reactor, url)
        await roundTrip(self, proxy.endpoint(LOOPBACK, echoPort), os.urandom(4096))

    @asyncTest
    async def test_danteSOCKS5(self) -> None:
        """
        Dante without authentication, SOCKS5 and SOCKS4.
        """
        _, echoPort = await listenEcho(self)
        server = await self.start(startDante)
        for scheme in ("socks5", "socks4"):
            proxy = SOCKSProxy.fromURL(_reactor, f"{scheme}://{LOOPBACK}:{server.port}")
            client = await roundTrip(self, proxy.endpoint(LOOPBACK, echoPort), b"d")
            await client.close()
