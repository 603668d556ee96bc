# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
The SOCKS5 client's GSSAPI method (RFC 1961) against our own server, both
in this process, with tickets of the test realm of L{tests._kerberos}: every
protection level with a 4 MiB transfer and a half-close, the server's
refusals, and the choice of method when the server offers two.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorFromThreads, IStreamClientEndpoint
from twisted.python.threadpool import ThreadPool

from socks_twisted import errors
from socks_twisted._wire import ABORT_MESSAGE, Command, ProtectionLevel
from socks_twisted.auth import GSSAPIPrincipalChecker, portalFor
from socks_twisted.client import AuthMethod, GSSAPIOptions, SOCKS5ClientEndpoint
from socks_twisted.server import GSSAPISettings, ServerSettings

from .._kerberos import KerberosRealm, requireKerberosRealm
from ._loopback import (
    LOOPBACK,
    ProxyTestCase,
    asyncTest,
    connectCollector,
    listenEcho,
    reactor,
    roundTrip,
    startOurServer,
    withTimeout,
)


class GSSAPITestCase(ProxyTestCase):
    """
    A realm, a thread pool for both sides, and our server with GSSAPI.
    """

    timeout = 120

    def setUp(self) -> None:
        self.realm: KerberosRealm = requireKerberosRealm(self)
        from socks_twisted import _gss

        self.gss = _gss
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="gssapi-test")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.credentials = _gss.acceptorCredentials(self.realm.keytab)

    def gssapiSettings(
        self,
        protection: frozenset[ProtectionLevel] | None = None,
        checkers: tuple[Any, ...] = (),
        allow: tuple[str, ...] = (),
        service: str | None = "rcmd",
    ) -> GSSAPISettings:
        """
        The server's GSSAPI settings over the realm's keytab.
        """
        gss = self.gss

        def newAcceptor() -> Any:
            return gss.Acceptor(
                self.credentials, IReactorFromThreads(reactor), self.pool
            )

        extra: dict[str, Any] = {}
        if protection is not None:
            extra["protection"] = protection
        return GSSAPISettings(
            newAcceptor=newAcceptor,
            portal=portalFor([*checkers, GSSAPIPrincipalChecker(principals=allow)]),
            service=service,
            **extra,
        )

    async def start(self, **kwargs: Any) -> tuple[int, Any]:
        """
        Start our server with C{ServerSettings(**kwargs)}.
        """
        return await startOurServer(self, settings=ServerSettings(**kwargs))

    def endpoint(
        self, port: int, echoPort: int, **options: Any
    ) -> SOCKS5ClientEndpoint:
        """
        A GSSAPI client endpoint to the echo server through our server.
        """
        methods = options.pop("methods", None)
        credentials = options.pop("credentials", None)
        proxy: IStreamClientEndpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port)
        return SOCKS5ClientEndpoint(
            LOOPBACK,
            echoPort,
            proxy,
            reactor=reactor,
            methods=methods,
            credentials=credentials,
            gssapi=GSSAPIOptions(host="localhost", threadpool=self.pool, **options),
        )


class ProtectionLevelTests(GSSAPITestCase):
    """
    Our client and server at each protection level.
    """

    async def transfer(self, level: ProtectionLevel, nec: bool = False) -> None:
        echo, echoPort = await listenEcho(self)
        port, factory = await self.start(gssapi=self.gssapiSettings())
        payload = os.urandom(4 * 1024 * 1024)
        client = await roundTrip(
            self, self.endpoint(port, echoPort, protection=level, nec=nec), payload
        )
        self.assertEqual(echo.received, payload)
        (session,) = factory.sessions
        self.assertEqual(session.protection, level)
        self.assertEqual(session.user, self.realm.userPrincipal.encode())
        assert client.transport is not None
        # Half-close through the wrapped tunnel.
        client.transport.write(b"last")
        client.transport.loseWriteConnection()  # type: ignore[attr-defined]
        await withTimeout(client.lost, "the close")
        self.assertEqual(client.received[-len(b"last[EOF]") :], b"last[EOF]")
        self.assertIn("readConnectionLost", client.events)

    @asyncTest
    async def test_none(self) -> None:
        """
        Level 0: no wrapping; 4 MiB and a half-close go through.
        """
        await self.transfer(ProtectionLevel.NONE)

    @asyncTest
    async def test_integrity(self) -> None:
        """
        Level 1: every byte in MTYP 3 messages, integrity only.
        """
        await self.transfer(ProtectionLevel.INTEGRITY)

    @asyncTest
    async def test_confidentiality(self) -> None:
        """
        Level 2: every byte in MTYP 3 messages, encrypted.
        """
        await self.transfer(ProtectionLevel.CONFIDENTIALITY)

    @asyncTest
    async def test_confidentialityNEC(self) -> None:
        """
        The NEC variant's unwrapped protection level, then level 2.
        """
        await self.transfer(ProtectionLevel.CONFIDENTIALITY, nec=True)

    @asyncTest
    async def test_serverGrantsLess(self) -> None:
        """
        A server allowing only level 0 answers 0 to a request for 2; the
        client goes on without wrapping, unless its minimum is higher.
        """
        _, echoPort = await listenEcho(self)
        port, factory = await self.start(
            gssapi=self.gssapiSettings(frozenset({ProtectionLevel.NONE}))
        )
        await roundTrip(self, self.endpoint(port, echoPort), b"hello")
        (session,) = factory.sessions
        self.assertEqual(session.protection, ProtectionLevel.NONE)
        endpoint = self.endpoint(
            port, echoPort, minimumProtection=ProtectionLevel.INTEGRITY
        )
        with self.assertRaises(errors.AuthenticationFailedError):
            await withTimeout(endpoint.connect(_factory()), "the refused connection")

    @asyncTest
    async def test_udpRefusedUnderProtection(self) -> None:
        """
        UDP ASSOCIATE under protection is refused with 0x07 (its datagrams
        are not wrapped); the refusal itself comes wrapped.
        """
        port, _ = await self.start(gssapi=self.gssapiSettings())
        endpoint = _UDPAssociateEndpoint(
            "0.0.0.0",
            0,
            TCP4ClientEndpoint(reactor, LOOPBACK, port),
            reactor=reactor,
            gssapi=GSSAPIOptions(host="localhost", threadpool=self.pool),
        )
        with self.assertRaises(errors.CommandNotSupportedError):
            await withTimeout(endpoint.connect(_factory()), "the refusal")


class _UDPAssociateEndpoint(SOCKS5ClientEndpoint):
    """
    Sends UDP ASSOCIATE as if it were a CONNECT: enough to see the reply.
    """

    _command = Command.UDP_ASSOCIATE
    _lowestPort = 0


class RefusalTests(GSSAPITestCase):
    """
    The server refuses with the abort message.
    """

    @asyncTest
    async def test_principalNotAllowed(self) -> None:
        """
        A principal not on the allow-list: the client's attempt fails with
        AuthenticationFailedError.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.start(
            gssapi=self.gssapiSettings(allow=("someone@KRBTEST.COM",))
        )
        with self.assertRaises(errors.AuthenticationFailedError):
            await withTimeout(
                self.endpoint(port, echoPort).connect(_factory()), "the refusal"
            )

    @asyncTest
    async def test_wrongService(self) -> None:
        """
        A ticket for a service principal in the keytab but of another
        service name than the server's is refused.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.start(gssapi=self.gssapiSettings(service="socks"))
        with self.assertRaises(errors.AuthenticationFailedError):
            await withTimeout(
                self.endpoint(port, echoPort).connect(_factory()), "the refusal"
            )

    @asyncTest
    async def test_unknownService(self) -> None:
        """
        A client asking for a ticket of a service the server has no key for
        fails (the server aborts the exchange, or the KDC refuses).
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.start(gssapi=self.gssapiSettings())
        with self.assertRaises(errors.AuthenticationFailedError):
            await withTimeout(
                self.endpoint(port, echoPort, service="other").connect(_factory()),
                "the refusal",
            )


class MethodChoiceTests(GSSAPITestCase):
    """
    With GSSAPI and username/password configured, the client's order wins.
    """

    async def chosen(self, methods: tuple[int, ...]) -> Any:
        _, echoPort = await listenEcho(self)
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"pw")
        portal = portalFor([checker])
        port, factory = await self.start(
            portal=portal, gssapi=self.gssapiSettings(checkers=(checker,))
        )
        await roundTrip(
            self,
            self.endpoint(
                port, echoPort, methods=methods, credentials=(b"alice", b"pw")
            ),
            b"hi",
        )
        (session,) = factory.sessions
        return session.user

    @asyncTest
    async def test_gssapiFirst(self) -> None:
        """
        GSSAPI listed first: the principal is the session's user.
        """
        user = await self.chosen((AuthMethod.GSSAPI, AuthMethod.USERNAME_PASSWORD))
        self.assertEqual(user, self.realm.userPrincipal.encode())

    @asyncTest
    async def test_passwordFirst(self) -> None:
        """
        Username/password listed first: the user name is the session's user.
        """
        user = await self.chosen((AuthMethod.USERNAME_PASSWORD, AuthMethod.GSSAPI))
        self.assertEqual(user, b"alice")


def _factory() -> Any:
    from twisted.internet.protocol import Factory, Protocol

    return Factory.forProtocol(Protocol)


class MalformedTests(GSSAPITestCase):
    """
    What the server does with RFC 1961 messages that break the protocol:
    close, with the abort message when a context step failed.
    """

    async def exchange(self, data: bytes) -> bytes:
        """
        Select GSSAPI by hand, send C{data}, and return everything the
        server sent until it closed.
        """
        port, _ = await self.start(gssapi=self.gssapiSettings())
        client = await connectCollector(
            self, TCP4ClientEndpoint(reactor, LOOPBACK, port)
        )
        assert client.transport is not None
        client.transport.write(b"\x05\x01\x01" + data)
        await withTimeout(client.lost, "the server to close")
        return client.received

    @asyncTest
    async def test_badContextToken(self) -> None:
        """
        A context token that is not one: the abort message, then the close.
        """
        received = await self.exchange(b"\x01\x01\x00\x04junk")
        self.assertEqual(received, b"\x05\x01" + ABORT_MESSAGE)

    @asyncTest
    async def test_badVersion(self) -> None:
        """
        A message of another version: the close.
        """
        received = await self.exchange(b"\x02\x01\x00\x04junk")
        self.assertEqual(received, b"\x05\x01")

    @asyncTest
    async def test_badType(self) -> None:
        """
        Encapsulated data before the context: the close.
        """
        received = await self.exchange(b"\x01\x03\x00\x04junk")
        self.assertEqual(received, b"\x05\x01")

    @asyncTest
    async def test_emptyToken(self) -> None:
        """
        An empty token: the close.
        """
        received = await self.exchange(b"\x01\x01\x00\x00")
        self.assertEqual(received, b"\x05\x01")


class ProxyTests(GSSAPITestCase):
    """
    L{SOCKSProxy} passes its C{gssapi} options on.
    """

    @asyncTest
    async def test_endpoint(self) -> None:
        """
        SOCKSProxy(gssapi=...).endpoint() authenticates with GSSAPI.
        """
        from socks_twisted.client import SOCKSProxy

        echo, echoPort = await listenEcho(self)
        port, factory = await self.start(gssapi=self.gssapiSettings())
        proxy = SOCKSProxy(
            reactor,
            TCP4ClientEndpoint(reactor, LOOPBACK, port),
            gssapi=GSSAPIOptions(
                host="localhost",
                protection=ProtectionLevel.INTEGRITY,
                threadpool=self.pool,
            ),
        )
        await roundTrip(self, proxy.endpoint(LOOPBACK, echoPort), b"via proxy")
        (session,) = factory.sessions
        self.assertEqual(session.protection, ProtectionLevel.INTEGRITY)
        self.assertEqual(echo.received, b"via proxy")

    def test_socks4(self) -> None:
        """
        GSSAPI is SOCKS5's: with version 4 it is a ValueError.
        """
        from socks_twisted.client import SOCKSProxy

        self.assertRaises(
            ValueError,
            SOCKSProxy,
            reactor,
            TCP4ClientEndpoint(reactor, LOOPBACK, 1),
            version=4,
            gssapi=GSSAPIOptions(host="localhost"),
        )


class TamperedTests(GSSAPITestCase):
    """
    Data under protection that does not unwrap ends the session.
    """

    @asyncTest
    async def test_tamperedData(self) -> None:
        """
        An MTYP 3 message whose token is not the context's: the server
        closes, and logs why.
        """
        _, echoPort = await listenEcho(self)
        port, factory = await self.start(gssapi=self.gssapiSettings())
        client = await roundTrip(
            self,
            self.endpoint(port, echoPort, protection=ProtectionLevel.INTEGRITY),
            b"fine",
        )
        (session,) = factory.sessions
        assert client.transport is not None
        raw: Any = client.transport
        raw.proxyTransport.transport.write(b"\x01\x03\x00\x04junk")
        await withTimeout(client.lost, "the close")
        self.assertIn("GSS-API unwrap failed", session.reason)
        self.assertEqual(session.outcome, "protocol_error")


class SOCKS4Tests(GSSAPITestCase):
    """
    SOCKS4 carries no authentication: refused when GSSAPI is on.
    """

    @asyncTest
    async def test_socks4Refused(self) -> None:
        """
        A SOCKS4 CONNECT gets 91 (rejected).
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.start(gssapi=self.gssapiSettings())
        client = await connectCollector(
            self, TCP4ClientEndpoint(reactor, LOOPBACK, port)
        )
        assert client.transport is not None
        client.transport.write(
            b"\x04\x01" + echoPort.to_bytes(2, "big") + b"\x7f\x00\x00\x01\x00"
        )
        await withTimeout(client.lost, "the server to close")
        self.assertEqual(client.received[:2], b"\x00\x5b")
