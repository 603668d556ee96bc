# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
HTTPS through L{SOCKSProxy.agent} and our server on loopback, the target's
certificate checked against a certificate authority made in the test.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import ssl
from twisted.internet.endpoints import TCP4ServerEndpoint, wrapServerTLS
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import BrowserLikePolicyForHTTPS, HTTPConnectionPool, readBody
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from socks_twisted.client import ISOCKSReactor, SOCKSProxy

from ._loopback import LOOPBACK, CertificateAuthority, asyncTest, reactor, withTimeout
from .test_ourserver import OurServerTestCase

_reactor = cast(ISOCKSReactor, reactor)

#: What the HTTPS server answers: more than one TLS record's worth.
BODY = b"secret page\n" * 2000


class _Page(Resource):
    """
    Answers every C{GET} with L{BODY}, after the path.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        """
        The path, a newline, then L{BODY}.
        """
        return request.path + b"\n" + BODY


class ProxyHTTPSTests(OurServerTestCase):
    """
    L{SOCKSProxy.agent} with a context factory that trusts a test authority.
    """

    async def startHTTPS(self, authority: CertificateAuthority) -> int:
        """
        A L{Site} behind TLS on loopback, with the authority's certificate
        for C{localhost} (and C{127.0.0.1}); stopped at cleanup.

        @return: Its port.
        """
        options = ssl.PrivateCertificate.loadPEM(authority.serverPEM).options()
        port: Any = await wrapServerTLS(
            options, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
        ).listen(Site(_Page()))
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    def pool(self) -> HTTPConnectionPool:
        """
        A persistent pool whose idle connections are closed at cleanup.
        """
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        return pool

    async def get(self, proxy: SOCKSProxy, policy: Any, url: bytes) -> bytes:
        """
        GET C{url} with C{proxy}'s agent and C{policy}; the body of a 200.
        """
        agent = proxy.agent(contextFactory=policy, pool=self.pool())
        response = await withTimeout(agent.request(b"GET", url), "the response")
        self.assertEqual(response.code, 200)
        body: bytes = await withTimeout(readBody(response), "the body")
        return body

    @asyncTest
    async def test_socks5hByName(self) -> None:
        """
        socks5h: C{https://localhost:PORT/} is resolved by the proxy, the
        certificate checked against the test authority, and the whole body
        arrives, through one SOCKS session.
        """
        authority = CertificateAuthority(("localhost",))
        webPort = await self.startHTTPS(authority)
        proxyPort, factory = await self.startServer()
        sessions: list[object] = []
        buildProtocol = factory.buildProtocol

        def counting(address: object) -> Any:
            sessions.append(address)
            return buildProtocol(address)

        self.patch(factory, "buildProtocol", counting)
        proxy = SOCKSProxy.fromURL(_reactor, f"socks5h://{LOOPBACK}:{proxyPort}")
        policy = BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(authority.caPEM)
        )
        body = await self.get(proxy, policy, b"https://localhost:%d/page" % webPort)
        self.assertEqual(body, b"/page\n" + BODY)
        self.assertEqual(len(sessions), 1)

    @asyncTest
    async def test_socks4aAndSocks5(self) -> None:
        """
        The same round trip with SOCKS4a (the name sent to the proxy) and
        with socks5 (the name resolved here, an address sent).
        """
        authority = CertificateAuthority(("localhost",))
        webPort = await self.startHTTPS(authority)
        proxyPort, _ = await self.startServer()
        policy = BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(authority.caPEM)
        )
        for url in (
            f"socks4a://{LOOPBACK}:{proxyPort}",
            f"socks5://{LOOPBACK}:{proxyPort}",
        ):
            proxy = SOCKSProxy.fromURL(_reactor, url)
            body = await self.get(proxy, policy, b"https://localhost:%d/" % webPort)
            self.assertEqual(body, b"/\n" + BODY, url)

    @asyncTest
    async def test_untrustedAuthority(self) -> None:
        """
        A policy that trusts another authority fails the request: the
        certificate is checked end to end, through the tunnel.
        """
        authority = CertificateAuthority(("localhost",))
        webPort = await self.startHTTPS(authority)
        proxyPort, _ = await self.startServer()
        proxy = SOCKSProxy.fromURL(_reactor, f"socks5h://{LOOPBACK}:{proxyPort}")
        other = CertificateAuthority(("localhost",))
        policy = BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(other.caPEM)
        )
        agent = proxy.agent(contextFactory=policy, pool=self.pool())
        with self.assertRaises(ResponseNeverReceived):
            await withTimeout(
                agent.request(b"GET", b"https://localhost:%d/" % webPort),
                "the failure",
            )

    @asyncTest
    async def test_wrongName(self) -> None:
        """
        A certificate for C{localhost} does not do for another name that
        leads to the same server.
        """
        authority = CertificateAuthority(("tls.test",))
        webPort = await self.startHTTPS(authority)
        proxyPort, _ = await self.startServer()
        proxy = SOCKSProxy.fromURL(_reactor, f"socks5h://{LOOPBACK}:{proxyPort}")
        policy = BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(authority.caPEM)
        )
        agent = proxy.agent(contextFactory=policy, pool=self.pool())
        with self.assertRaises(ResponseNeverReceived):
            await withTimeout(
                agent.request(b"GET", b"https://localhost:%d/" % webPort),
                "the failure",
            )
