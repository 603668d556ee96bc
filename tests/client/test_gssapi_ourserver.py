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
import socket
import struct
from typing import Any, cast

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IReactorFromThreads,
    IReactorUDP,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool

from socks_twisted import errors
from socks_twisted._wire import (
    ABORT_MESSAGE,
    GSSAPIMessageReader,
    MessageType,
    ProtectionLevel,
    contextMessage,
    protectionMessage,
)
from socks_twisted.auth import GSSAPIPrincipalChecker, portalFor
from socks_twisted.client import (
    AuthMethod,
    GSSAPIOptions,
    SOCKS5ClientEndpoint,
    SOCKSProxy,
)
from socks_twisted.server import GSSAPISettings, ServerSettings

from .._kerberos import KerberosRealm, requireKerberosRealm
from ._loopback import (
    LOOPBACK,
    Collector,
    ProxyTestCase,
    asyncTest,
    connectCollector,
    exchangeThroughBind,
    listenEcho,
    reactor,
    roundTrip,
    startOurServer,
    waitUntil,
    withTimeout,
)
from .test_udp import Receiver, UDPEcho, echoed


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
    async def test_sessionLog(self) -> None:
        """
        The session's summary names the level agreed: C{gssapi=integrity}
        in the text, C{protection} in the event.
        """
        events: list[LogEvent] = []

        def observe(event: LogEvent) -> None:
            if event.get("log_format", "").startswith("SOCKS session {session} {"):
                events.append(event)

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        _, echoPort = await listenEcho(self)
        port, _ = await self.start(gssapi=self.gssapiSettings())
        client = await roundTrip(
            self,
            self.endpoint(port, echoPort, protection=ProtectionLevel.INTEGRITY),
            b"logged",
        )
        await client.close()
        await waitUntil(lambda: bool(events), "the session's summary")
        (event,) = events
        self.assertEqual(event["protection"], "integrity")
        text = formatEvent(event)
        self.assertIn(
            f"user={self.realm.userPrincipal} gssapi=integrity version=5", text
        )

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


class OtherCommandTests(GSSAPITestCase):
    """
    BIND, UDP ASSOCIATE and Tor's lookups under each protection level,
    through L{SOCKSProxy} with C{gssapi}.
    """

    def setUp(self) -> None:
        super().setUp()
        udp = cast(IReactorUDP, reactor)
        self.udpEcho = udp.listenUDP(0, UDPEcho(), LOOPBACK, 65535)
        self.addCleanup(self.udpEcho.stopListening)

    async def proxy(self, level: ProtectionLevel) -> tuple[SOCKSProxy, Any]:
        """
        Our server with GSSAPI, and a proxy asking for C{level} and
        accepting no less.
        """
        port, factory = await self.start(gssapi=self.gssapiSettings())
        proxy = SOCKSProxy(
            reactor,
            TCP4ClientEndpoint(reactor, LOOPBACK, port),
            gssapi=GSSAPIOptions(
                host="localhost",
                protection=level,
                minimumProtection=level,
                threadpool=self.pool,
            ),
        )
        return proxy, factory

    async def udpRoundTrips(self, level: ProtectionLevel) -> None:
        proxy, factory = await self.proxy(level)
        receiver = Receiver()
        association = await withTimeout(proxy.udp(receiver), "the association")
        self.addCleanup(association.stopListening)
        self.assertEqual(
            association.controlTransport.datagramProtection is None,
            level is ProtectionLevel.NONE,
        )
        echo = (LOOPBACK, self.udpEcho.getHost().port)  # type: ignore[attr-defined]
        # Small, large (near what one wrapped message holds), and empty.
        for payload in (b"datagram", os.urandom(60_000), b""):
            answer = await echoed(association, receiver, payload, echo)
            self.assertEqual(answer, (payload.upper(), echo))
        (session,) = factory.sessions
        self.assertEqual(session.protection, level)
        self.assertEqual(dict(association.drops), {})

    @asyncTest
    async def test_udpNone(self) -> None:
        """
        Level 0: plain datagrams.
        """
        await self.udpRoundTrips(ProtectionLevel.NONE)

    @asyncTest
    async def test_udpIntegrity(self) -> None:
        """
        Level 1: every datagram, header included, in one MTYP 3 message.
        """
        await self.udpRoundTrips(ProtectionLevel.INTEGRITY)

    @asyncTest
    async def test_udpConfidentiality(self) -> None:
        """
        Level 2: the same, encrypted.
        """
        await self.udpRoundTrips(ProtectionLevel.CONFIDENTIALITY)

    @asyncTest
    async def test_udpUnwrappedFromClientDropped(self) -> None:
        """
        Under protection, a plain SOCKS datagram from the client's address
        is dropped by the server (counted), and does not take the place of
        the client: the client's own wrapped datagrams still go through.
        """
        proxy, factory = await self.proxy(ProtectionLevel.INTEGRITY)
        receiver = Receiver()
        association = await withTimeout(proxy.udp(receiver), "the association")
        self.addCleanup(association.stopListening)
        (session,) = factory.sessions
        relay = session._association
        echo = (LOOPBACK, self.udpEcho.getHost().port)  # type: ignore[attr-defined]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
            forger.bind((LOOPBACK, 0))
            forger.sendto(
                b"\x00\x00\x00\x01"
                + socket.inet_aton(LOOPBACK)
                + struct.pack("!H", echo[1])
                + b"forged",
                (association.relayAddress.host, association.relayAddress.port),
            )
            await waitUntil(
                lambda: relay.drops["GSS-API unwrap failed"] == 1, "the drop"
            )
        self.assertEqual(relay.datagramsFromClient, 0)
        association.write(b"genuine", echo)
        answer = await withTimeout(receiver.queue.get(), "the echo")
        self.assertEqual(answer, (b"GENUINE", echo))

    @asyncTest
    async def test_udpThroughUpstream(self) -> None:
        """
        A protected association on a server that sends its datagrams on
        through an upstream proxy (our own, plain): wrapped between the
        client and the first hop, plain beyond.
        """
        upstreamPort, _ = await self.start()
        port, factory = await self.start(
            gssapi=self.gssapiSettings(), upstream=f"socks5://127.0.0.1:{upstreamPort}"
        )
        proxy = SOCKSProxy(
            reactor,
            TCP4ClientEndpoint(reactor, LOOPBACK, port),
            gssapi=GSSAPIOptions(
                host="localhost",
                protection=ProtectionLevel.CONFIDENTIALITY,
                minimumProtection=ProtectionLevel.CONFIDENTIALITY,
                threadpool=self.pool,
            ),
        )
        receiver = Receiver()
        association = await withTimeout(proxy.udp(receiver), "the association")
        self.addCleanup(association.stopListening)
        echo = (LOOPBACK, self.udpEcho.getHost().port)  # type: ignore[attr-defined]
        answer = await echoed(association, receiver, b"chained", echo)
        self.assertEqual(answer, (b"CHAINED", echo))
        (session,) = factory.sessions
        self.assertEqual(session.via, f"socks5://127.0.0.1:{upstreamPort}")

    async def bind(self, level: ProtectionLevel) -> None:
        proxy, factory = await self.proxy(level)
        await exchangeThroughBind(self, proxy.bind)
        (session,) = factory.sessions
        self.assertEqual(session.protection, level)

    @asyncTest
    async def test_bindIntegrity(self) -> None:
        """
        BIND's two replies and the relayed bytes, at level 1.
        """
        await self.bind(ProtectionLevel.INTEGRITY)

    @asyncTest
    async def test_bindConfidentiality(self) -> None:
        """
        The same at level 2.
        """
        await self.bind(ProtectionLevel.CONFIDENTIALITY)

    @asyncTest
    async def test_lookups(self) -> None:
        """
        RESOLVE and RESOLVE_PTR, their replies wrapped at level 2 (the
        client accepts no less, and reads the replies only by unwrapping).
        """
        proxy, _ = await self.proxy(ProtectionLevel.CONFIDENTIALITY)
        self.assertEqual(await proxy.resolve("127.0.0.1"), "127.0.0.1")
        expected, _ = socket.getnameinfo((LOOPBACK, 0), socket.NI_NAMEREQD)
        self.assertEqual(await proxy.resolvePTR(LOOPBACK), expected)


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


class SubnegotiationTests(GSSAPITestCase):
    """
    A client that establishes the context by hand, then breaks the
    protection-level subnegotiation or what follows it: the server closes,
    with the abort message when the token does not unwrap.
    """

    async def established(self, **settings: Any) -> tuple[Collector, Any, Any]:
        """
        Our server, a raw connection that selected GSSAPI, and an
        established initiator context on it.

        @return: The connection, the initiator, and the server's factory.
        """
        port, factory = await self.start(gssapi=self.gssapiSettings(**settings))
        client = await connectCollector(
            self, TCP4ClientEndpoint(reactor, LOOPBACK, port)
        )
        assert client.transport is not None
        client.transport.write(b"\x05\x01\x01")
        initiator = self.gss.Initiator(
            self.gss.serviceName("rcmd", "localhost"),
            IReactorFromThreads(reactor),
            self.pool,
        )
        reader = GSSAPIMessageReader()
        received = 2  # the method selection, 05 01
        await client.waitForBytes(received)
        token = await initiator.step(None)
        while True:
            client.transport.write(contextMessage(token))
            if initiator.complete:
                break
            while (message := reader.nextMessage()) is None:
                data = await client.waitForBytes(received + 1)
                reader.receiveData(data[received:])
                received = len(data)
            token = await initiator.step(message.token)
            if token is None:
                break
        self.assertTrue(initiator.complete)
        return client, initiator, factory

    async def assertClosed(
        self, client: Collector, factory: Any, data: bytes, reason: str
    ) -> bytes:
        """
        Send C{data}; the server closes, having logged C{reason}.

        @return: What the server sent after the context messages.
        """
        before = len(client.received)
        assert client.transport is not None
        (session,) = factory.sessions
        client.transport.write(data)
        await withTimeout(client.lost, "the server to close")
        self.assertIn(reason, session.reason)
        return client.received[before:]

    @asyncTest
    async def test_unknownLevel(self) -> None:
        """
        A wrapped protection level of 7: the close, a protocol error.
        """
        client, initiator, factory = await self.established()
        token = initiator._established().wrap(b"\x07", False).message
        sent = await self.assertClosed(
            client, factory, protectionMessage(token), "protocol error"
        )
        self.assertEqual(sent, b"")

    @asyncTest
    async def test_levelDoesNotUnwrap(self) -> None:
        """
        A protection-level token that is not the context's wrap: the abort
        message and the close.
        """
        client, _, factory = await self.established()
        sent = await self.assertClosed(
            client,
            factory,
            protectionMessage(b"\x00" * 40),
            "GSS-API protection subnegotiation failed",
        )
        self.assertEqual(sent, ABORT_MESSAGE)

    @asyncTest
    async def test_plainRequestUnderProtection(self) -> None:
        """
        Granted integrity, a client that sends its request unwrapped in the
        same segment as its protection message (as curl 8.20 does when
        granted a level it cannot do): the close, before any reply.
        """
        client, initiator, factory = await self.established()
        token = initiator.wrapProtectionLevel(ProtectionLevel.INTEGRITY)
        request = bytes.fromhex("05010001 7f000001 0050")
        await self.assertClosed(
            client,
            factory,
            protectionMessage(token) + request,
            "GSSAPI message version 5, not 1",
        )
        answer = GSSAPIMessageReader()
        answer.receiveData(client.received[2:])
        messages = []
        while (message := answer.nextMessage()) is not None:
            messages.append(message.type)
        self.assertEqual(messages[-1], MessageType.PROTECTION)
        self.assertEqual(answer.unconsumed(), b"")


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

    @asyncTest
    async def test_fromURL(self) -> None:
        """
        SOCKSProxy.fromURL(url, gssapi=...) authenticates with GSSAPI; a
        SOCKS4 URL with it is a ValueError.
        """
        _, echoPort = await listenEcho(self)
        port, factory = await self.start(gssapi=self.gssapiSettings())
        options = GSSAPIOptions(
            host="localhost",
            protection=ProtectionLevel.INTEGRITY,
            threadpool=self.pool,
        )
        proxy = SOCKSProxy.fromURL(
            reactor, f"socks5h://127.0.0.1:{port}", gssapi=options
        )
        await roundTrip(self, proxy.endpoint(LOOPBACK, echoPort), b"from a URL")
        (session,) = factory.sessions
        self.assertEqual(session.protection, ProtectionLevel.INTEGRITY)
        self.assertRaises(
            ValueError,
            SOCKSProxy.fromURL,
            reactor,
            f"socks4a://127.0.0.1:{port}",
            gssapi=options,
        )

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
