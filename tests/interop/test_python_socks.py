"""
Interoperability with python-socks: its synchronous client reaches an HTTP
server on loopback through C{twistd socks} with SOCKS4, SOCKS4a and SOCKS5,
with and without a password.

The blocking python-socks calls run in a thread so that the HTTP server, which
lives in the test's reactor, keeps serving.
"""

from __future__ import annotations

from python_socks import ProxyError
from python_socks.sync import Proxy
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from ._support import (
    HTTPFileServer,
    SOCKSServerProcess,
    fetchOverSocket,
    startHTTPServer,
    startSOCKSServer,
)

USER = "ps-user"
PASSWORD = "pyth0n-S0cks-secret"


def fetchThroughProxy(
    proxyURL: str, host: str, port: int, path: str, rdns: bool
) -> bytes:
    """
    Connect through a SOCKS proxy with python-socks and fetch a URL path with
    HTTP/1.0.  This blocks: call it in a thread.

    @param proxyURL: Such as C{"socks5://user:password@127.0.0.1:1080"}.
    @param host: The target host, a name or an address literal.
    @param port: The target port.
    @param path: The URL path.
    @param rdns: Whether the proxy resolves C{host} (SOCKS4a, or a SOCKS5
        domain-name request) rather than the client.

    @return: The response body.
    """
    proxy = Proxy.from_url(proxyURL, rdns=rdns)
    sock = proxy.connect(dest_host=host, dest_port=port, timeout=30)
    hostHeader = f"[{host}]" if ":" in host else host
    return fetchOverSocket(sock, f"{hostHeader}:{port}", path)


class _PythonSOCKSTestCase(TestCase):
    """
    Shared set-up: a SOCKS server and an HTTP server.
    """

    socks: SOCKSServerProcess
    http: HTTPFileServer

    #: Extra options for C{twistd socks}.
    serverOptions: tuple[str, ...] = ()

    def setUp(self) -> None:
        # The SOCKS server starts first so that it stops last: the HTTP
        # server's cleanup checks that the proxy closed its connections.
        self.socks = startSOCKSServer(self, *self.serverOptions)
        self.http = startHTTPServer(self)

    async def fetch(self, proxyURL: str, host: str, rdns: bool) -> bytes:
        """
        Fetch the HTTP server's file through the proxy, in a thread.

        @param proxyURL: The proxy URL, with C{PORT} standing for the SOCKS
            server's port.
        @param host: C{"127.0.0.1"}, C{"localhost"} or C{"::1"}.
        @param rdns: Whether the proxy resolves the host name.

        @return: The body.
        """
        port = self.http.port6 if ":" in host else self.http.port
        if port is None:
            raise SkipTest("no IPv6 loopback on this host")
        return await deferToThread(
            fetchThroughProxy,
            proxyURL.replace("PORT", str(self.socks.port)),
            host,
            port,
            self.http.path,
            rdns,
        )

    async def assertFetches(self, proxyURL: str, host: str, rdns: bool) -> None:
        """
        Assert that the whole file arrives, over exactly one connection.

        @param proxyURL: As for L{fetch}.
        @param host: As for L{fetch}.
        @param rdns: As for L{fetch}.
        """
        body = await self.fetch(proxyURL, host, rdns)
        self.assertEqual(len(body), len(self.http.body))
        self.assertTrue(body == self.http.body, "the body differs from the file")
        self.assertEqual(self.http.connectionCount, 1)

    async def assertRefused(self, proxyURL: str, host: str, rdns: bool) -> None:
        """
        Assert that python-socks reports a proxy error and that the server
        never connected to the target.

        @param proxyURL: As for L{fetch}.
        @param host: As for L{fetch}.
        @param rdns: As for L{fetch}.
        """
        with self.assertRaises(ProxyError):
            await self.fetch(proxyURL, host, rdns)
        self.assertEqual(self.http.connectionCount, 0)


class PythonSOCKSTests(_PythonSOCKSTestCase):
    """
    python-socks through a server that requires no authentication.
    """

    async def test_socks4(self) -> None:
        """
        SOCKS4 with an IPv4 address carries the request and the whole body.
        """
        await self.assertFetches("socks4://127.0.0.1:PORT", "127.0.0.1", rdns=False)

    async def test_socks4WithUserID(self) -> None:
        """
        SOCKS4 with a user ID (which a server without C{--auth} ignores)
        carries the whole body.
        """
        await self.assertFetches(
            "socks4://someone@127.0.0.1:PORT", "127.0.0.1", rdns=False
        )

    async def test_socks4a(self) -> None:
        """
        SOCKS4a: the host name C{localhost} goes to the server, which
        resolves it.
        """
        await self.assertFetches("socks4://127.0.0.1:PORT", "localhost", rdns=True)

    async def test_socks5IPv4(self) -> None:
        """
        SOCKS5 with an IPv4 address (address type 1).
        """
        await self.assertFetches("socks5://127.0.0.1:PORT", "127.0.0.1", rdns=False)

    async def test_socks5DomainName(self) -> None:
        """
        SOCKS5 with the domain name C{localhost} (address type 3), resolved by
        the server.
        """
        await self.assertFetches("socks5://127.0.0.1:PORT", "localhost", rdns=True)

    async def test_socks5IPv6(self) -> None:
        """
        SOCKS5 with the IPv6 address C{::1} (address type 4).
        """
        await self.assertFetches("socks5://127.0.0.1:PORT", "::1", rdns=False)


class PythonSOCKSCopyingTests(PythonSOCKSTests):
    """
    python-socks through a server that copies relayed bytes through Python
    instead of splicing them (C{--relay copy}).
    """

    serverOptions = ("--relay", "copy")


class PythonSOCKSAuthenticationTests(_PythonSOCKSTestCase):
    """
    python-socks through a server started with C{--auth memory:USER:PASSWORD}.
    """

    serverOptions = ("--auth", f"memory:{USER}:{PASSWORD}")

    async def test_socks5Password(self) -> None:
        """
        SOCKS5 with the right user name and password, and an IPv4 address.
        """
        await self.assertFetches(
            f"socks5://{USER}:{PASSWORD}@127.0.0.1:PORT", "127.0.0.1", rdns=False
        )

    async def test_socks5PasswordDomainName(self) -> None:
        """
        SOCKS5 with the right password and a domain name for the server to
        resolve.
        """
        await self.assertFetches(
            f"socks5://{USER}:{PASSWORD}@127.0.0.1:PORT", "localhost", rdns=True
        )

    async def test_socks5WrongPassword(self) -> None:
        """
        A wrong password is refused before the server dials the target.
        """
        await self.assertRefused(
            f"socks5://{USER}:not-{PASSWORD}@127.0.0.1:PORT", "127.0.0.1", rdns=False
        )

    async def test_socks5WithoutCredentials(self) -> None:
        """
        A client that offers no authentication method is refused.
        """
        await self.assertRefused("socks5://127.0.0.1:PORT", "127.0.0.1", rdns=False)

    async def test_socks4Refused(self) -> None:
        """
        SOCKS4 is refused by a server that requires passwords.
        """
        await self.assertRefused("socks4://127.0.0.1:PORT", "127.0.0.1", rdns=False)

    async def test_socks4aRefused(self) -> None:
        """
        SOCKS4a is refused by a server that requires passwords, even with
        the user name as SOCKS4 user ID.
        """
        await self.assertRefused(
            f"socks4://{USER}@127.0.0.1:PORT", "localhost", rdns=True
        )
