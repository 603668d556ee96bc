# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Unit tests for L{SOCKSAgentEndpointFactory} and L{socksAgent}: the
endpoint built for each URI, checked by the bytes it sends to a fake proxy.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface.verify import verifyObject

from socks_twisted.client import SOCKSAgentEndpointFactory, socksAgent

from ._helpers import FakeProxyEndpoint, RecordingFactory, TCPStringTransport, h


class EndpointFactoryTests(SynchronousTestCase):
    """
    L{SOCKSAgentEndpointFactory} makes SOCKS endpoints for C{http} and
    C{https} URIs.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.proxy = FakeProxyEndpoint()

    def connect(
        self, url: bytes, factory: SOCKSAgentEndpointFactory | None = None
    ) -> tuple[Protocol, TCPStringTransport]:
        """
        Connect the endpoint made for C{url} to the fake proxy.

        @return: The handshake protocol and the transport it writes to.
        """
        if factory is None:
            factory = SOCKSAgentEndpointFactory(self.reactor, self.proxy)
        endpoint = factory.endpointForURI(URI.fromBytes(url))
        endpoint.connect(RecordingFactory())
        transport = TCPStringTransport()
        protocol, _ = self.proxy.complete(transport)
        return protocol, transport

    def test_interface(self) -> None:
        """
        The factory provides L{IAgentEndpointFactory}.
        """
        self.assertTrue(
            verifyObject(
                IAgentEndpointFactory,
                SOCKSAgentEndpointFactory(self.reactor, self.proxy),
            )
        )

    def test_http(self) -> None:
        """
        An C{http} URI gets a SOCKS5 CONNECT to its host and port, by name.
        """
        protocol, transport = self.connect(b"http://example.com:8080/path")
        self.assertEqual(transport.value(), h("05 01 00"))
        transport.clear()
        protocol.dataReceived(h("05 00"))
        self.assertEqual(
            transport.value(), h("05 01 00 03 0b") + b"example.com" + h("1f 90")
        )

    def test_httpDefaultPort(self) -> None:
        """
        Without a port, C{http} means 80 and C{https} 443.
        """
        for url, port in ((b"http://a.test/", "00 50"), (b"https://a.test/", "01 bb")):
            protocol, transport = self.connect(url)
            transport.clear()
            protocol.dataReceived(h("05 00"))
            self.assertEqual(
                transport.value(), h("05 01 00 03 06") + b"a.test" + h(port)
            )

    def test_ipv6(self) -> None:
        """
        A bracketed IPv6 host goes out as ATYP 4.
        """
        protocol, transport = self.connect(b"http://[2001:db8::1]:443/")
        transport.clear()
        protocol.dataReceived(h("05 00"))
        self.assertEqual(
            transport.value(),
            h("05 01 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 01 bb"),
        )

    def test_https(self) -> None:
        """
        An C{https} URI gets TLS once the tunnel is up: nothing but SOCKS
        before the reply, then a ClientHello naming the host (SNI).
        """
        protocol, transport = self.connect(b"https://example.com/")
        transport.clear()
        protocol.dataReceived(h("05 00"))
        transport.clear()
        protocol.dataReceived(h("05 00 00 01 00 00 00 00 00 00"))
        hello = transport.value()
        self.assertEqual(hello[:1], h("16"), hello[:16])
        self.assertIn(b"example.com", hello)

    def test_socks4(self) -> None:
        """
        C{version=4} speaks SOCKS4a for names, with the user ID.
        """
        factory = SOCKSAgentEndpointFactory(
            self.reactor, self.proxy, version=4, userID=b"fred"
        )
        _, transport = self.connect(b"http://example.com/", factory)
        self.assertEqual(
            transport.value(),
            h("04 01 00 50 00 00 00 01") + b"fred\x00example.com\x00",
        )

    def test_credentials(self) -> None:
        """
        SOCKS5 credentials are used.
        """
        factory = SOCKSAgentEndpointFactory(
            self.reactor, self.proxy, credentials=("alice", "pw"), methods=(2,)
        )
        protocol, transport = self.connect(b"http://example.com/", factory)
        self.assertEqual(transport.value(), h("05 01 02"))
        transport.clear()
        protocol.dataReceived(h("05 02"))
        self.assertEqual(transport.value(), h("01 05") + b"alice" + h("02") + b"pw")

    def test_refusals(self) -> None:
        """
        Other schemes raise L{SchemeNotSupported}; options of the other SOCKS
        version, or another version, raise L{ValueError}.
        """
        factory = SOCKSAgentEndpointFactory(self.reactor, self.proxy)
        self.assertRaises(
            SchemeNotSupported, factory.endpointForURI, URI.fromBytes(b"ftp://a/")
        )
        for kwargs in (
            {"version": 6},
            {"version": 4, "credentials": ("a", "b")},
            {"version": 4, "methods": (0,)},
            {"version": 5, "userID": b"fred"},
        ):
            self.assertRaises(
                ValueError,
                SOCKSAgentEndpointFactory,
                self.reactor,
                self.proxy,
                **kwargs,
            )


class SOCKSAgentTests(SynchronousTestCase):
    """
    L{socksAgent} returns an agent with its own pool.
    """

    def test_ownPool(self) -> None:
        """
        Each agent gets a new persistent pool unless one is given.
        """
        reactor = MemoryReactorClock()
        proxy = FakeProxyEndpoint()
        first = socksAgent(reactor, proxy)
        second = socksAgent(reactor, proxy)
        self.assertIsNot(first._pool, second._pool)
        self.assertTrue(first._pool.persistent)
        pool = HTTPConnectionPool(reactor)
        self.assertIs(socksAgent(reactor, proxy, pool=pool)._pool, pool)

    def test_requestGoesThroughProxy(self) -> None:
        """
        A request connects to the proxy and sends the HTTP request only
        after the SOCKS reply.
        """
        reactor = MemoryReactorClock()
        proxy = FakeProxyEndpoint()
        agent = socksAgent(reactor, proxy)
        agent.request(b"GET", b"http://example.com/index")
        transport = TCPStringTransport()
        protocol, _ = proxy.complete(transport)
        self.assertEqual(transport.value(), h("05 01 00"))
        transport.clear()
        protocol.dataReceived(h("05 00"))
        transport.clear()
        protocol.dataReceived(h("05 00 00 01 00 00 00 00 00 00"))
        self.assertTrue(
            transport.value().startswith(b"GET /index HTTP/1.1\r\n"), transport.value()
        )
