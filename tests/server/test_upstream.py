"""
Upstream chaining over loopback: our server reaches targets through a
second server of ours, with username/password on each hop.
"""

import socket
from typing import Any, cast

from twisted.internet import defer, error, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

from socks_twisted._addresses import hostAndPort
from socks_twisted.errors import (
    ConnectionNotAllowedError,
    ConnectionRefusedError,
    GeneralServerFailureError,
    TTLExpiredError,
)
from socks_twisted.policy import parseRules
from socks_twisted.server import ServerSettings, SOCKSServerFactory

from ._chain import STEP, ChainTestCase, Collect, CollectUDP

FRONT_USER, FRONT_PASSWORD = b"front", b"front-pw"
UP_USER, UP_PASSWORD = b"up", b"up-pw"


def closedPort() -> int:
    """
    A loopback port nothing listens on (bound, then closed).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return cast(int, s.getsockname()[1])


class OwnChainTests(ChainTestCase):
    """
    Client -> our front server -> our upstream server -> target.
    """

    async def chain(
        self,
        scheme: str = "socks5",
        upstreamPassword: bytes = UP_PASSWORD,
        upstreamPort: int | None = None,
        rules: list[dict[str, object]] | None = None,
        serverWide: bool = True,
    ) -> tuple[SOCKSServerFactory, SOCKSServerFactory | None, str]:
        """
        Start the upstream (unless C{upstreamPort}) and the front server;
        return both and the URL a client reaches the front with.
        """
        upstream: SOCKSServerFactory | None = None
        if upstreamPort is None:
            upstream, upstreamPort = await self.startServer({UP_USER: UP_PASSWORD})
        credentials = f"{UP_USER.decode()}:{upstreamPassword.decode()}@"
        url = f"{scheme}://{credentials}127.0.0.1:{upstreamPort}"
        front, frontPort = await self.startServer(
            {FRONT_USER: FRONT_PASSWORD},
            upstream=url if serverWide else None,
            connectTimeout=STEP,
        )
        if rules is not None:
            front.setRules(parseRules(rules, {}, "test.toml"), {})
        return (
            front,
            upstream,
            (
                f"socks5h://{FRONT_USER.decode()}:{FRONT_PASSWORD.decode()}"
                f"@127.0.0.1:{frontPort}"
            ),
        )

    async def test_connect(self) -> None:
        """
        A CONNECT goes through the upstream's CONNECT; both sessions log
        it, the front's naming the hop (without its credentials) and the
        address the upstream's reply named.
        """
        echo = await self.startEcho()
        _, _, url = await self.chain()
        client = await self.connect(self.proxy(url), "127.0.0.1", echo)
        client.tunnel.write(b"hello")
        self.assertEqual(await client.receive(5), b"hello")
        bound = client.tunnel.proxyBoundAddress
        assert isinstance(bound, IPv4Address)
        self.assertEqual(bound.host, "127.0.0.1")
        self.assertNotEqual(bound.port, 0)
        client.tunnel.loseConnection()
        await client.closed
        first = await self.sessionEvent(1)
        second = await self.sessionEvent(2)
        events = {e["user"]: e for e in (first, second)}
        front, up = events["front"], events["up"]
        self.assertEqual(front["reply"], 0)
        self.assertEqual(up["reply"], 0)
        self.assertTrue(front["via"].startswith("socks5://127.0.0.1:"))
        self.assertNotIn("up-pw", front["via"])
        self.assertEqual(front["viaBound"], f"127.0.0.1:{bound.port}")
        self.assertIsNone(up["via"])

    async def test_connectByNameUpstreamResolves(self) -> None:
        """
        With socks5h the name goes upstream unresolved.
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(scheme="socks5h")
        client = await self.connect(self.proxy(url), "localhost", echo)
        client.tunnel.write(b"name")
        self.assertEqual(await client.receive(4), b"name")
        client.tunnel.loseConnection()
        await client.closed
        events = [await self.sessionEvent(1), await self.sessionEvent(2)]
        up = next(e for e in events if e["user"] == "up")
        self.assertEqual(up["target"], f"localhost:{echo}")

    async def test_connectByNameResolvedHere(self) -> None:
        """
        With socks5 the front resolves the name and sends an address.
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(scheme="socks5")
        client = await self.connect(self.proxy(url), "localhost", echo)
        client.tunnel.write(b"x")
        await client.receive(1)
        client.tunnel.loseConnection()
        await client.closed
        events = [await self.sessionEvent(1), await self.sessionEvent(2)]
        up = next(e for e in events if e["user"] == "up")
        self.assertIn(up["target"], (f"127.0.0.1:{echo}", f"[::1]:{echo}"))

    async def test_socks4Upstream(self) -> None:
        """
        A socks4:// upstream carries CONNECT (the upstream lets SOCKS4 in
        without auth here).
        """
        echo = await self.startEcho()
        _, upstreamPort = await self.startServer()
        _, frontPort = await self.startServer(
            upstream=f"socks4://127.0.0.1:{upstreamPort}"
        )
        client = await self.connect(
            self.proxy(f"socks5://127.0.0.1:{frontPort}"), "127.0.0.1", echo
        )
        client.tunnel.write(b"four")
        self.assertEqual(await client.receive(4), b"four")

    async def test_upstreamRefusesCredentials(self) -> None:
        """
        An upstream that rejects our password: 0x01 general failure.
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(upstreamPassword=b"wrong")
        with self.assertRaises(GeneralServerFailureError):
            await self.connect(self.proxy(url), "127.0.0.1", echo)
        event = next(
            e
            for e in [await self.sessionEvent(1), await self.sessionEvent(2)]
            if e["user"] == "front"
        )
        self.assertIn("did not accept our credentials", event["reason"])

    async def test_upstreamDown(self) -> None:
        """
        An upstream nobody listens at: 0x01 general failure, not 0x05 (the
        target did not refuse).
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(upstreamPort=closedPort())
        with self.assertRaises(GeneralServerFailureError):
            await self.connect(self.proxy(url), "127.0.0.1", echo)
        event = await self.sessionEvent(1)
        self.assertEqual(event["reply"], 1)
        self.assertIn("failed", event["reason"])

    async def test_upstreamReplyPassedOn(self) -> None:
        """
        The upstream's own reply code is passed on: a target that refuses
        gives 0x05 through the chain.
        """
        _, _, url = await self.chain()
        with self.assertRaises(ConnectionRefusedError):
            await self.connect(self.proxy(url), "127.0.0.1", closedPort())

    async def test_deniedNeverSentUpstream(self) -> None:
        """
        A target our rules deny is refused (0x02) without asking the
        upstream.
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(
            rules=[{"action": "deny", "to": "127.0.0.1", "ports": echo}]
        )
        with self.assertRaises(ConnectionNotAllowedError):
            await self.connect(self.proxy(url), "127.0.0.1", echo)
        await self.sessionEvent(1)
        self.assertEqual(len(self.log.events), 1)
        self.assertEqual(self.log.events[0]["user"], "front")

    async def test_deniedNameResolvedHere(self) -> None:
        """
        With socks5:// every address of a name is checked here: a name all
        of whose addresses are denied is refused before the upstream.
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(
            rules=[{"action": "deny", "to": ["127.0.0.0/8", "::1"]}]
        )
        with self.assertRaises(ConnectionNotAllowedError):
            await self.connect(self.proxy(url), "localhost", echo)
        await self.sessionEvent(1)
        self.assertEqual(len(self.log.events), 1)

    async def test_viaDirectBypassesUpstream(self) -> None:
        """
        A rule's via = "direct" goes direct although --upstream is set (to
        a port nobody listens on, so going there would fail).
        """
        echo = await self.startEcho()
        _, _, url = await self.chain(
            upstreamPort=closedPort(),
            rules=[
                {"action": "allow", "ports": echo, "via": "direct"},
            ],
        )
        client = await self.connect(self.proxy(url), "127.0.0.1", echo)
        client.tunnel.write(b"direct")
        self.assertEqual(await client.receive(6), b"direct")
        client.tunnel.loseConnection()
        await client.closed
        event = await self.sessionEvent(1)
        self.assertIsNone(event["via"])

    async def test_ruleVia(self) -> None:
        """
        A rule's via routes through an upstream the server has no
        --upstream for; the session log names it.
        """
        echo = await self.startEcho()
        _, upstreamPort = await self.startServer({UP_USER: UP_PASSWORD})
        _, _, url = await self.chain(
            upstreamPort=upstreamPort,
            serverWide=False,
            rules=[
                {
                    "action": "allow",
                    "ports": echo,
                    "via": f"socks5h://up:up-pw@127.0.0.1:{upstreamPort}",
                },
            ],
        )
        client = await self.connect(self.proxy(url), "127.0.0.1", echo)
        client.tunnel.write(b"rule")
        self.assertEqual(await client.receive(4), b"rule")
        client.tunnel.loseConnection()
        await client.closed
        events = [await self.sessionEvent(1), await self.sessionEvent(2)]
        front = next(e for e in events if e["user"] == "front")
        self.assertEqual(front["via"], f"socks5h://127.0.0.1:{upstreamPort}")

    async def test_bind(self) -> None:
        """
        A BIND goes through the upstream's BIND: the first reply names where
        the upstream listens, the second the peer it accepted.
        """
        _, _, url = await self.chain()
        peerSide = Collect()
        pending = await self.proxy(url).bind(
            Factory.forProtocol(lambda: peerSide), "127.0.0.1", 0
        )
        address = pending.address
        assert isinstance(address, IPv4Address)
        self.assertEqual(address.host, "127.0.0.1")
        peerEndpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", address.port)
        peer = await peerEndpoint.connect(Factory.forProtocol(Collect))
        assert isinstance(peer, Collect) and peer.transport is not None
        self.addCleanup(peer.transport.loseConnection)
        accepted = pending.accepted()
        accepted.addTimeout(STEP, cast(Any, reactor))
        await accepted
        tunnel = peerSide.transport
        assert tunnel is not None
        self.assertEqual(
            hostAndPort(tunnel.getPeer()), hostAndPort(peer.transport.getHost())
        )
        peer.transport.write(b"to client")
        self.assertEqual(await peerSide.receive(9), b"to client")
        tunnel.write(b"to peer")
        self.assertEqual(await peer.receive(7), b"to peer")
        tunnel.loseConnection()
        await peerSide.closed
        events = [await self.sessionEvent(1), await self.sessionEvent(2)]
        front = next(e for e in events if e["user"] == "front")
        self.assertEqual(front["command"], "BIND")
        self.assertEqual(front["viaBound"], f"127.0.0.1:{address.port}")

    async def test_udp(self) -> None:
        """
        A UDP association goes through an association with the upstream:
        datagrams reach the target and its answers come back, naming it.
        """
        echo = self.startEchoUDP()
        _, _, url = await self.chain()
        receiver = CollectUDP()
        association = await self.proxy(url).udp(receiver)
        self.addCleanup(association.stopListening)
        association.write(b"ping", ("127.0.0.1", echo))
        data, source = await receiver.next()
        self.assertEqual((data, source), (b"echo:ping", ("127.0.0.1", echo)))
        association.write(b"again", ("127.0.0.1", echo))
        data, _ = await receiver.next()
        self.assertEqual(data, b"echo:again")

    async def test_udpByNameUpstreamResolves(self) -> None:
        """
        Through socks5h, a datagram to a name goes upstream unresolved and
        the answer comes back.
        """
        echo = self.startEchoUDP()
        _, _, url = await self.chain(scheme="socks5h")
        receiver = CollectUDP()
        association = await self.proxy(url).udp(receiver)
        self.addCleanup(association.stopListening)
        association.write(b"named", ("localhost", echo))
        data, source = await receiver.next()
        self.assertEqual(data, b"echo:named")
        self.assertEqual(source[1], echo)

    async def test_udpThroughSOCKS4Refused(self) -> None:
        """
        A SOCKS4 upstream has no UDP: 0x07.
        """
        _, upstreamPort = await self.startServer()
        _, frontPort = await self.startServer(
            upstream=f"socks4://127.0.0.1:{upstreamPort}"
        )
        from socks_twisted.errors import CommandNotSupportedError

        with self.assertRaises(CommandNotSupportedError):
            d = self.proxy(f"socks5://127.0.0.1:{frontPort}").udp(CollectUDP())
            d.addTimeout(STEP, cast(Any, reactor))
            await d

    async def test_udpDeniedDatagramNotSent(self) -> None:
        """
        A datagram to a destination the rules deny is dropped here.
        """
        echo = self.startEchoUDP()
        other = self.startEchoUDP()
        _, _, url = await self.chain(
            rules=[
                {"action": "deny", "commands": "udp", "ports": other},
                {"action": "allow"},
            ]
        )
        receiver = CollectUDP()
        association = await self.proxy(url).udp(receiver)
        self.addCleanup(association.stopListening)
        association.write(b"denied", ("127.0.0.1", other))
        association.write(b"allowed", ("127.0.0.1", echo))
        data, source = await receiver.next()
        self.assertEqual((data, source[1]), (b"echo:allowed", echo))
        await _settle()
        self.assertEqual(receiver.received, [])


async def _settle() -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0.2, d.callback, None)
    await d


class Silent(Protocol):
    """
    Accepts and never answers: an upstream that hangs.
    """

    def connectionMade(self) -> None:
        SILENT.append(self)

    def connectionLost(self, reason: object = None) -> None:
        SILENT.remove(self)


SILENT: list[Silent] = []


class HangingUpstreamTests(ChainTestCase):
    """
    An upstream that accepts and never answers.
    """

    async def test_timeout(self) -> None:
        """
        No answer within --connect-timeout: 0x06, and the connection to the
        upstream is closed.
        """
        hanging = await self.listen(Factory.forProtocol(Silent))
        _, frontPort = await self.startServer(
            upstream=f"socks5://127.0.0.1:{hanging}", connectTimeout=0.5
        )
        with self.assertRaises(TTLExpiredError):
            await self.connect(
                self.proxy(f"socks5://127.0.0.1:{frontPort}"), "127.0.0.1", 9
            )
        for _ in range(100):
            if not SILENT:
                break
            await _settle()
        self.assertEqual(SILENT, [])

    async def test_clientLeaves(self) -> None:
        """
        A client that leaves while the upstream is asked: the connection to
        the upstream is abandoned.
        """
        hanging = await self.listen(Factory.forProtocol(Silent))
        front, frontPort = await self.startServer(
            upstream=f"socks5://127.0.0.1:{hanging}"
        )
        connecting = (
            self.proxy(f"socks5://127.0.0.1:{frontPort}")
            .endpoint("127.0.0.1", 9)
            .connect(Factory.forProtocol(Collect))
        )
        for _ in range(100):
            if SILENT:
                break
            await _settle()
        self.assertEqual(len(SILENT), 1)
        connecting.cancel()
        with self.assertRaises(error.ConnectingCancelledError):
            await connecting
        for _ in range(100):
            if not SILENT and not front.sessions:
                break
            await _settle()
        self.assertEqual((SILENT, front.sessions), ([], set()))


class SOCKS4ClientTests(ChainTestCase):
    """
    A SOCKS4 client of ours, chained through a SOCKS5 upstream.
    """

    async def test_connect(self) -> None:
        echo = await self.startEcho()
        _, upstreamPort = await self.startServer({UP_USER: UP_PASSWORD})
        _, frontPort = await self.startServer(
            upstream=f"socks5://up:up-pw@127.0.0.1:{upstreamPort}"
        )
        client = await self.connect(
            self.proxy(f"socks4://127.0.0.1:{frontPort}"), "127.0.0.1", echo
        )
        client.tunnel.write(b"four")
        self.assertEqual(await client.receive(4), b"four")


class LoopTests(ChainTestCase):
    """
    An upstream that is this server itself.
    """

    async def test_refused(self) -> None:
        """
        0x01, without a hop to itself.
        """
        factory, port = await self.startServer()
        factory.settings = ServerSettings(upstream=f"socks5://127.0.0.1:{port}")
        with self.assertRaises(GeneralServerFailureError):
            await self.connect(self.proxy(f"socks5://127.0.0.1:{port}"), "127.0.0.1", 9)
        event = await self.sessionEvent(1)
        self.assertIn("is this server itself", event["reason"])
        self.assertEqual(len(self.log.events), 1)
