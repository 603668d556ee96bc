# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
The client endpoints against real third-party SOCKS servers started on
loopback by L{tests.interop._thirdparty}: Dante, microsocks and OpenSSH's
dynamic forwarding (C{ssh -D}).  Each test connects through the server to a
Twisted echo server on loopback and checks the bytes that come back, or the
error the server's refusal maps to.

Outside CI a missing server program skips its tests; under C{CI=true} it
fails them.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import error
from twisted.internet.address import HostnameAddress, IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.threads import deferToThread

from socks_twisted import errors
from socks_twisted.client import (
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    SOCKSTunnelTransport,
)
from tests.interop._thirdparty import (
    ThirdPartyServer,
    startDante,
    startMicrosocks,
    startSSHDynamic,
)

from ._loopback import (
    LOOPBACK,
    ProxyTestCase,
    asyncTest,
    listenEcho,
    reactor,
    roundTrip,
)


class ThirdPartyTestCase(ProxyTestCase):
    """
    Helpers shared by the third-party tests.
    """

    timeout = 90

    async def start(self, starter: Any, **kwargs: Any) -> ThirdPartyServer:
        """
        Run a blocking starter from L{tests.interop._thirdparty} in a
        thread, so the reactor keeps running while it waits.
        """
        server: ThirdPartyServer = await deferToThread(starter, self, **kwargs)
        return server

    def proxy(self, server: ThirdPartyServer) -> IStreamClientEndpoint:
        """
        The endpoint leading to C{server}.
        """
        return TCP4ClientEndpoint(reactor, server.host, server.port)

    async def check(
        self, endpoint: IStreamClientEndpoint, echoPort: int, name: bool = False
    ) -> None:
        """
        Bytes sent through C{endpoint} come back from the echo server, and
        the transport names the target.
        """
        payload = os.urandom(64 * 1024) + repr(endpoint).encode()
        client = await roundTrip(self, endpoint, payload)
        assert isinstance(client.transport, SOCKSTunnelTransport)
        expected = (
            HostnameAddress(b"localhost", echoPort)
            if name
            else IPv4Address("TCP", LOOPBACK, echoPort)
        )
        self.assertEqual(client.transport.getPeer(), expected)
        await client.close()


class DanteTests(ThirdPartyTestCase):
    """
    Dante (C{danted}): SOCKS4 and SOCKS5, not SOCKS4a; username/password
    against a system account.
    """

    @asyncTest
    async def test_socks4(self) -> None:
        """
        SOCKS4 CONNECT to an IPv4 literal.
        """
        _, echoPort = await listenEcho(self)
        dante = await self.start(startDante)
        await self.check(
            SOCKS4ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(dante), reactor=reactor
            ),
            echoPort,
        )

    @asyncTest
    async def test_socks4aRefused(self) -> None:
        """
        Dante does not implement SOCKS4a: a name is refused with CD 91.
        """
        _, echoPort = await listenEcho(self)
        dante = await self.start(startDante)
        await self.assertFails(
            SOCKS4ClientEndpoint(
                "localhost", echoPort, self.proxy(dante), reactor=reactor
            ),
            errors.SOCKS4RejectedError,
        )

    @asyncTest
    async def test_socks5NoAuth(self) -> None:
        """
        SOCKS5 without authentication, to an IPv4 literal and to a name.
        """
        _, echoPort = await listenEcho(self)
        dante = await self.start(startDante)
        await self.check(
            SOCKS5ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(dante), reactor=reactor
            ),
            echoPort,
        )
        await self.check(
            SOCKS5ClientEndpoint(
                "localhost", echoPort, self.proxy(dante), reactor=reactor
            ),
            echoPort,
            name=True,
        )

    @asyncTest
    async def test_socks5Username(self) -> None:
        """
        SOCKS5 with Dante's C{username} method: the right password works.
        """
        _, echoPort = await listenEcho(self)
        dante = await self.start(startDante, auth=True)
        assert dante.username is not None and dante.password is not None
        await self.check(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                self.proxy(dante),
                credentials=(dante.username, dante.password),
                reactor=reactor,
            ),
            echoPort,
        )

    @asyncTest
    async def test_socks5UsernameRefusals(self) -> None:
        """
        With the C{username} method: a wrong password is
        L{errors.AuthenticationFailedError}, no credentials is
        L{errors.NoAcceptableMethodsError}, and SOCKS4 is refused.
        """
        _, echoPort = await listenEcho(self)
        dante = await self.start(startDante, auth=True)
        assert dante.username is not None
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                self.proxy(dante),
                credentials=(dante.username, "wrong password"),
                reactor=reactor,
            ),
            errors.AuthenticationFailedError,
        )
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(dante), reactor=reactor
            ),
            errors.NoAcceptableMethodsError,
        )
        await self.assertFails(
            SOCKS4ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(dante), reactor=reactor
            ),
            errors.SOCKS4RejectedError,
        )

    @asyncTest
    async def test_refused(self) -> None:
        """
        A closed loopback port: Dante's refusal is a
        L{error.ConnectionRefusedError} (SOCKS5) or CD 91 (SOCKS4).
        """
        dante = await self.start(startDante)
        closed = await self.closedPort()
        await self.assertFails(
            SOCKS5ClientEndpoint(LOOPBACK, closed, self.proxy(dante), reactor=reactor),
            error.ConnectionRefusedError,
        )
        await self.assertFails(
            SOCKS4ClientEndpoint(LOOPBACK, closed, self.proxy(dante), reactor=reactor),
            errors.SOCKS4RejectedError,
        )


class MicrosocksTests(ThirdPartyTestCase):
    """
    microsocks: SOCKS5 only, optional username/password.
    """

    @asyncTest
    async def test_noAuth(self) -> None:
        """
        SOCKS5 without authentication, to a literal and to a name.
        """
        _, echoPort = await listenEcho(self)
        micro = await self.start(startMicrosocks)
        await self.check(
            SOCKS5ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(micro), reactor=reactor
            ),
            echoPort,
        )
        await self.check(
            SOCKS5ClientEndpoint(
                "localhost", echoPort, self.proxy(micro), reactor=reactor
            ),
            echoPort,
            name=True,
        )

    @asyncTest
    async def test_auth(self) -> None:
        """
        With C{-u/-P}: the right credentials work (offered after no-auth, so
        microsocks must pick the method it requires), a wrong password is
        L{errors.AuthenticationFailedError} and none is
        L{errors.NoAcceptableMethodsError}.
        """
        _, echoPort = await listenEcho(self)
        micro = await self.start(startMicrosocks, auth=True)
        assert micro.username is not None and micro.password is not None
        await self.check(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                self.proxy(micro),
                credentials=(micro.username, micro.password),
                reactor=reactor,
            ),
            echoPort,
        )
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                echoPort,
                self.proxy(micro),
                credentials=(micro.username, "wrong"),
                reactor=reactor,
            ),
            errors.AuthenticationFailedError,
        )
        await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK, echoPort, self.proxy(micro), reactor=reactor
            ),
            errors.NoAcceptableMethodsError,
        )


class SSHDynamicTests(ThirdPartyTestCase):
    """
    OpenSSH's C{ssh -D}: SOCKS4, SOCKS4a and SOCKS5 without authentication.
    """

    @asyncTest
    async def test_socks4AndSOCKS4a(self) -> None:
        """
        SOCKS4 to a literal and SOCKS4a to a name.
        """
        _, echoPort = await listenEcho(self)
        ssh = await self.start(startSSHDynamic)
        await self.check(
            SOCKS4ClientEndpoint(LOOPBACK, echoPort, self.proxy(ssh), reactor=reactor),
            echoPort,
        )
        await self.check(
            SOCKS4ClientEndpoint(
                "localhost", echoPort, self.proxy(ssh), reactor=reactor
            ),
            echoPort,
            name=True,
        )

    @asyncTest
    async def test_socks5(self) -> None:
        """
        SOCKS5 to a literal and to a name.
        """
        _, echoPort = await listenEcho(self)
        ssh = await self.start(startSSHDynamic)
        await self.check(
            SOCKS5ClientEndpoint(LOOPBACK, echoPort, self.proxy(ssh), reactor=reactor),
            echoPort,
        )
        await self.check(
            SOCKS5ClientEndpoint(
                "localhost", echoPort, self.proxy(ssh), reactor=reactor
            ),
            echoPort,
            name=True,
        )

    @asyncTest
    async def test_socks5Credentials(self) -> None:
        """
        Offered only username/password, C{ssh -D} (which has no
        authentication) closes the connection instead of answering
        C{05 FF}: a L{errors.SOCKSProtocolError} that says so.
        """
        ssh = await self.start(startSSHDynamic)
        e = await self.assertFails(
            SOCKS5ClientEndpoint(
                LOOPBACK,
                9,
                self.proxy(ssh),
                credentials=("user", "password"),
                methods=(2,),
                reactor=reactor,
            ),
            errors.SOCKSProtocolError,
        )
        self.assertIn("closed the connection", str(e))
        self.assertIn("method selection", str(e))
