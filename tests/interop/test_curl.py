"""
Interoperability with curl: curl fetches a file from an HTTP server on
loopback through C{twistd socks}, in every SOCKS mode curl offers.
"""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import TestCase

from ._support import (
    CLEAN_EXIT_STATUSES,
    HTTPFileServer,
    ProcessResult,
    SOCKSServerProcess,
    fetchWithCurl,
    requirePeer,
    startHTTPServer,
    startSOCKSServer,
)

#: Credentials for the servers that require them; distinctive, so a search
#: of the server's log for them cannot match anything else.
USER = "curl-user"
PASSWORD = "c0rrect-h0rse-Battery"
WRONG_PASSWORD = "wr0ng-Staple-h0rse"


#: curl's exit code when its --max-time ran out.
CURLE_OPERATION_TIMEDOUT = 28


class _CurlTestCase(TestCase):
    """
    Run curl through the SOCKS server under test.
    """

    curl: str
    socks: SOCKSServerProcess
    http: HTTPFileServer

    async def fetch(self, *curlArgs: str) -> tuple[ProcessResult, bytes | None]:
        """
        Run curl with the given arguments plus options that save the body to
        a new file, and read that file.

        @param curlArgs: Proxy options and the URL.

        @return: How curl ended, and the body it saved (L{None} if it saved
            no file).
        """
        return await fetchWithCurl(self, self.curl, curlArgs)

    def proxyAddress(self) -> str:
        """
        @return: The SOCKS server's address as curl takes it.
        """
        return f"127.0.0.1:{self.socks.port}"


class CurlTests(_CurlTestCase):
    """
    curl through a server that requires no authentication.
    """

    #: Extra options for C{twistd socks}.
    serverOptions: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.curl = requirePeer("curl", "curl")
        # The SOCKS server starts first so that it stops last: the HTTP
        # server's cleanup checks that the proxy closed its connections.
        self.socks = startSOCKSServer(self, *self.serverOptions)
        self.http = startHTTPServer(self)

    async def assertFetches(self, *curlArgs: str) -> None:
        """
        Assert that curl, with these arguments, downloads the whole file.

        @param curlArgs: Proxy options and the URL.
        """
        result, body = await self.fetch(*curlArgs)
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIsNotNone(body)
        assert body is not None
        self.assertEqual(len(body), len(self.http.body))
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.http.sha256)
        self.assertEqual(self.http.connectionCount, 1)

    async def test_socks4(self) -> None:
        """
        C{curl --socks4} (the client resolves the name, the request carries
        an IPv4 address) downloads the file intact.
        """
        await self.assertFetches("--socks4", self.proxyAddress(), self.http.url())

    async def test_socks4a(self) -> None:
        """
        C{curl --socks4a} with the host name C{localhost} (the server
        resolves it) downloads the file intact.
        """
        await self.assertFetches(
            "--socks4a", self.proxyAddress(), self.http.url("localhost")
        )

    async def test_socks5(self) -> None:
        """
        C{curl --socks5} with an IPv4 address downloads the file intact.
        """
        await self.assertFetches("--socks5", self.proxyAddress(), self.http.url())

    async def test_socks5Hostname(self) -> None:
        """
        C{curl --socks5-hostname} with the host name C{localhost} (sent as a
        domain name for the server to resolve) downloads the file intact.
        """
        await self.assertFetches(
            "--socks5-hostname", self.proxyAddress(), self.http.url("localhost")
        )

    async def test_socks5IPv6Target(self) -> None:
        """
        C{curl --socks5} to an IPv6 literal (a request of address type 4, all
        16 bytes of the address) downloads the file intact.
        """
        await self.assertFetches("--socks5", self.proxyAddress(), self.http.url("::1"))

    async def test_sequentialSessions(self) -> None:
        """
        One server carries several sessions one after another, each in a
        different mode, and each download is intact.
        """
        for option, host in [
            ("--socks5", "127.0.0.1"),
            ("--socks4", "127.0.0.1"),
            ("--socks5-hostname", "localhost"),
        ]:
            result, body = await self.fetch(
                option, self.proxyAddress(), self.http.url(host)
            )
            self.assertEqual(result.exitCode, 0, result.describe())
            self.assertEqual(body, self.http.body)
        self.assertEqual(self.http.connectionCount, 3)


class CurlCopyingTests(CurlTests):
    """
    curl through a server that copies relayed bytes through Python instead
    of splicing them (C{--relay copy}).
    """

    serverOptions = ("--relay", "copy")


class CurlAuthenticationTests(_CurlTestCase):
    """
    curl through a server started with C{--auth memory:USER:PASSWORD}.
    """

    def setUp(self) -> None:
        self.curl = requirePeer("curl", "curl")
        self.socks = startSOCKSServer(self, "--auth", f"memory:{USER}:{PASSWORD}")
        self.http = startHTTPServer(self)

    async def assertRefused(self, *curlArgs: str) -> None:
        """
        Assert that curl, with these arguments, fails, saves no body, and
        that the server never connected to the target.

        @param curlArgs: Proxy options and the URL.
        """
        result, body = await self.fetch(*curlArgs)
        # A refusal, not a hang that curl's --max-time cut short.
        self.assertNotIn(
            result.exitCode, (0, None, CURLE_OPERATION_TIMEDOUT), result.describe()
        )
        self.assertFalse(body, f"curl saved a body: {body!r:.200}")
        self.assertEqual(self.http.connectionCount, 0)

    async def test_socks5WithPassword(self) -> None:
        """
        C{curl --socks5 --proxy-user USER:PASSWORD} with the right password
        downloads the file intact.
        """
        result, body = await self.fetch(
            "--socks5",
            self.proxyAddress(),
            "--proxy-user",
            f"{USER}:{PASSWORD}",
            self.http.url(),
        )
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(body, self.http.body)

    async def test_socks5HostnameWithPassword(self) -> None:
        """
        C{curl --socks5-hostname} with the right password and the host name
        C{localhost} downloads the file intact.
        """
        result, body = await self.fetch(
            "--socks5-hostname",
            self.proxyAddress(),
            "--proxy-user",
            f"{USER}:{PASSWORD}",
            self.http.url("localhost"),
        )
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(body, self.http.body)

    async def test_wrongPassword(self) -> None:
        """
        A wrong password fails: curl exits non-zero, saves nothing, and the
        server never dials the target.
        """
        await self.assertRefused(
            "--socks5",
            self.proxyAddress(),
            "--proxy-user",
            f"{USER}:{WRONG_PASSWORD}",
            self.http.url(),
        )

    async def test_unknownUser(self) -> None:
        """
        An unknown user name with the right password fails.
        """
        await self.assertRefused(
            "--socks5",
            self.proxyAddress(),
            "--proxy-user",
            f"someone-else:{PASSWORD}",
            self.http.url(),
        )

    async def test_noCredentials(self) -> None:
        """
        C{curl --socks5} without credentials offers only the "no
        authentication" method, which the server must not accept.
        """
        await self.assertRefused("--socks5", self.proxyAddress(), self.http.url())

    async def test_socks4Refused(self) -> None:
        """
        SOCKS4 has no passwords, so a server with C{--auth} refuses it.
        """
        await self.assertRefused("--socks4", self.proxyAddress(), self.http.url())

    async def test_socks4aRefused(self) -> None:
        """
        SOCKS4a is refused by a server with C{--auth} too.
        """
        await self.assertRefused(
            "--socks4a", self.proxyAddress(), self.http.url("localhost")
        )

    async def test_passwordsNotLogged(self) -> None:
        """
        Neither a right nor a wrong password appears in the server's log.
        """
        good, _ = await self.fetch(
            "--socks5",
            self.proxyAddress(),
            "--proxy-user",
            f"{USER}:{PASSWORD}",
            self.http.url(),
        )
        self.assertEqual(good.exitCode, 0, good.describe())
        bad, _ = await self.fetch(
            "--socks5",
            self.proxyAddress(),
            "--proxy-user",
            f"{USER}:{WRONG_PASSWORD}",
            self.http.url(),
        )
        self.assertNotEqual(bad.exitCode, 0, bad.describe())
        # Stopping the server ends and logs every session.
        status = self.socks.stop()
        log = self.socks.output()
        self.assertIn(status, CLEAN_EXIT_STATUSES, log)
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn(WRONG_PASSWORD, log)
