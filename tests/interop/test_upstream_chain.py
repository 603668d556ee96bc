"""
Upstream chaining through third-party servers: our server (in-process)
reaches loopback targets through Dante (CONNECT, BIND, UDP ASSOCIATE, with
its username method) and microsocks (CONNECT, with its username and
password).  Dante's configuration (L{startDante}) allows only 127.0.0.0/8
destinations; no SOCKS4a is sent to either (neither has it).

Under C{CI=true} a missing server is a failure (L{requirePeer}).
"""

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from socks_twisted._addresses import hostAndPort
from socks_twisted.errors import (
    ConnectionRefusedError,
    GeneralServerFailureError,
)
from tests.interop._thirdparty import (
    ThirdPartyServer,
    startDante,
    startMicrosocks,
)
from tests.server._chain import STEP, ChainTestCase, Collect, CollectUDP
from tests.server.test_upstream import closedPort


def upstreamURL(server: ThirdPartyServer, password: str | None = None) -> str:
    """
    The socks5:// URL of C{server}, with its credentials (or C{password}
    instead of its own).
    """
    credentials = ""
    if server.username is not None:
        credentials = f"{server.username}:{password or server.password}@"
    return f"socks5://{credentials}{server.host}:{server.port}"


class ChainThroughThirdPartyTests(ChainTestCase):
    """
    Client -> our server (username/password) -> third-party server (its
    auth) -> loopback target.
    """

    async def front(self, upstream: str) -> str:
        """
        Our server chaining to C{upstream}, with a user of its own; the URL
        a client reaches it with.
        """
        _, port = await self.startServer(
            {b"front": b"front-pw"}, upstream=upstream, connectTimeout=STEP
        )
        return f"socks5://front:front-pw@127.0.0.1:{port}"

    async def assertConnects(self, url: str) -> None:
        echo = await self.startEcho()
        client = await self.connect(self.proxy(url), "127.0.0.1", echo)
        client.tunnel.write(b"through the chain")
        self.assertEqual(await client.receive(17), b"through the chain")
        client.tunnel.loseConnection()
        await client.closed
        event = await self.sessionEvent(1)
        self.assertEqual(event["reply"], 0)
        self.assertTrue(event["via"].startswith("socks5://127.0.0.1:"))

    async def test_danteConnect(self) -> None:
        """
        CONNECT through Dante with its username method.
        """
        dante = startDante(self, auth=True)
        await self.assertConnects(await self.front(upstreamURL(dante)))

    async def test_danteConnectRefused(self) -> None:
        """
        Dante's own reply (0x05 for a closed port) is passed on.
        """
        dante = startDante(self, auth=True)
        url = await self.front(upstreamURL(dante))
        with self.assertRaises(ConnectionRefusedError):
            await self.connect(self.proxy(url), "127.0.0.1", closedPort())

    async def test_danteWrongPassword(self) -> None:
        """
        Dante rejecting our password gives 0x01.
        """
        dante = startDante(self, auth=True)
        url = await self.front(upstreamURL(dante, password="wrong"))
        echo = await self.startEcho()
        with self.assertRaises(GeneralServerFailureError):
            await self.connect(self.proxy(url), "127.0.0.1", echo)
        event = await self.sessionEvent(1)
        self.assertIn("did not accept our credentials", event["reason"])

    async def test_danteBind(self) -> None:
        """
        BIND through Dante's BIND: the first reply names Dante's listener,
        the second the peer Dante accepted.
        """
        dante = startDante(self, auth=True)
        url = await self.front(upstreamURL(dante))
        peerSide = Collect()
        pending = await self.proxy(url).bind(
            Factory.forProtocol(lambda: peerSide), "127.0.0.1", 0
        )
        address = pending.address
        assert isinstance(address, IPv4Address)
        peer = await TCP4ClientEndpoint(reactor, "127.0.0.1", address.port).connect(
            Factory.forProtocol(Collect)
        )
        assert isinstance(peer, Collect) and peer.transport is not None
        self.addCleanup(peer.transport.loseConnection)
        accepted = pending.accepted()
        accepted.addTimeout(STEP, cast(Any, reactor))
        await accepted
        tunnel = peerSide.tunnel
        self.assertEqual(
            hostAndPort(tunnel.getPeer()), hostAndPort(peer.transport.getHost())
        )
        peer.transport.write(b"from peer")
        self.assertEqual(await peerSide.receive(9), b"from peer")
        tunnel.write(b"to peer")
        self.assertEqual(await peer.receive(7), b"to peer")
        tunnel.loseConnection()
        await peerSide.closed

    async def test_danteUDP(self) -> None:
        """
        UDP ASSOCIATE through an association with Dante.
        """
        dante = startDante(self, auth=True)
        url = await self.front(upstreamURL(dante))
        echo = self.startEchoUDP()
        receiver = CollectUDP()
        association = await self.proxy(url).udp(receiver)
        self.addCleanup(association.stopListening)
        association.write(b"over dante", ("127.0.0.1", echo))
        data, source = await receiver.next()
        self.assertEqual((data, source), (b"echo:over dante", ("127.0.0.1", echo)))

    async def test_microsocksConnect(self) -> None:
        """
        CONNECT through microsocks with its username and password; it names
        no bound address (0.0.0.0:0), so our reply names our end of the
        connection to it.
        """
        micro = startMicrosocks(self, auth=True)
        url = await self.front(upstreamURL(micro))
        echo = await self.startEcho()
        client = await self.connect(self.proxy(url), "127.0.0.1", echo)
        bound = client.tunnel.proxyBoundAddress
        assert isinstance(bound, IPv4Address)
        self.assertEqual(bound.host, "127.0.0.1")
        self.assertNotEqual(bound.port, 0)
        client.tunnel.write(b"micro")
        self.assertEqual(await client.receive(5), b"micro")

    async def test_microsocksWrongPassword(self) -> None:
        """
        microsocks rejecting our password gives 0x01.
        """
        micro = startMicrosocks(self, auth=True)
        url = await self.front(upstreamURL(micro, password="wrong"))
        echo = await self.startEcho()
        with self.assertRaises(GeneralServerFailureError):
            await self.connect(self.proxy(url), "127.0.0.1", echo)

    async def test_microsocksBindNotSupported(self) -> None:
        """
        microsocks has no BIND: its 0x07 is passed on.
        """
        from socks_twisted.errors import CommandNotSupportedError

        micro = startMicrosocks(self, auth=True)
        url = await self.front(upstreamURL(micro))
        d = self.proxy(url).bind(Factory.forProtocol(Collect), "127.0.0.1", 0)
        d.addTimeout(STEP, cast(Any, reactor))
        with self.assertRaises(CommandNotSupportedError):
            await d
