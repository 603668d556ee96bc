"""
A UDP association under GSS-API protection, over real loopback UDP sockets,
with a stand-in context (the real one is exercised with Kerberos in
L{tests.client.test_gssapi_ourserver}): what goes to and comes from the
client is one MTYP 3 message per datagram; what the targets see and send is
plain.
"""

from __future__ import annotations

from socks_twisted._gssstream import DatagramWrapper
from socks_twisted._wire import ProtectionLevel, encapsulatedMessage

from ..test_gssstream import _Context
from .test_udp_cache import RelayTestCase, header


class ProtectedRelayTests(RelayTestCase):
    """
    The relay unwraps the client's datagrams and wraps what goes to it.
    """

    def setUp(self) -> None:
        self.context = _Context()
        self.context.chunk = 4000
        protection = DatagramWrapper(self.context, ProtectionLevel.INTEGRITY)
        self.relay, port = self.association(protection=protection)
        self.address = ("127.0.0.1", port.getHost().port)
        self.client = self.udpSocket()
        self.target = self.udpSocket()
        host, self.targetPort = self.target.getsockname()[:2]
        self.header = header(host, self.targetPort)

    async def test_exchange(self) -> None:
        """
        A wrapped request reaches the target as its bare payload; the
        answer comes back to the client wrapped, header included.
        """
        before = self.seen(self.relay)
        self.client.sendto(
            encapsulatedMessage(b"<" + self.header + b"ping>"), self.address
        )
        await self.relayed(self.relay, before)
        data, source = self.target.recvfrom(65535)
        self.assertEqual(data, b"ping")
        self.target.sendto(b"pong", source)
        await self.relayed(self.relay, before + 1)
        self.assertEqual(
            self.client.recv(65535),
            encapsulatedMessage(b"<" + self.header + b"pong>"),
        )
        self.assertEqual((self.relay.bytesFromClient, self.relay.bytesToClient), (4, 4))

    async def test_plainDatagramDropped(self) -> None:
        """
        A plain SOCKS datagram, or a wrapped one the context refuses, from
        the client's IP is dropped and counted; neither locks the
        association onto its source port, so the real client's first
        wrapped datagram still does.
        """
        forger = self.udpSocket()
        before = self.seen(self.relay)
        forger.sendto(self.header + b"plain", self.address)
        forger.sendto(encapsulatedMessage(self.header + b"forged"), self.address)
        await self.relayed(self.relay, before, 2)
        self.assertEqual(dict(self.relay.drops), {"GSS-API unwrap failed": 2})
        self.assertEqual(self.relay.clientPort, 0)
        self.client.sendto(
            encapsulatedMessage(b"<" + self.header + b"real>"), self.address
        )
        await self.relayed(self.relay, before + 2)
        self.assertEqual(self.target.recv(65535), b"real")
        self.assertEqual(self.relay.clientPort, self.client.getsockname()[1])
        # Once locked, a plain datagram from the client's own port is
        # dropped too.
        self.client.sendto(self.header + b"plain again", self.address)
        await self.relayed(self.relay, before + 3)
        self.assertEqual(self.relay.drops["GSS-API unwrap failed"], 3)
        self.assertEqual(self.relay.datagramsFromClient, 1)

    async def test_answerTooLongToWrap(self) -> None:
        """
        An answer whose wrapping would not fit one message is dropped and
        counted, not cut or sent bare; a shorter one goes on.
        """
        before = self.seen(self.relay)
        self.client.sendto(
            encapsulatedMessage(b"<" + self.header + b"q>"), self.address
        )
        await self.relayed(self.relay, before)
        _, source = self.target.recvfrom(65535)
        self.target.sendto(b"x" * 4000, source)
        self.target.sendto(b"short", source)
        await self.relayed(self.relay, before + 2)
        self.assertEqual(self.relay.drops["too long to wrap"], 1)
        self.assertEqual(
            self.client.recv(65535),
            encapsulatedMessage(b"<" + self.header + b"short>"),
        )

    async def test_wrapFailure(self) -> None:
        """
        A context that can no longer wrap (expired) drops what would go to
        the client, counted.
        """
        before = self.seen(self.relay)
        self.client.sendto(
            encapsulatedMessage(b"<" + self.header + b"q>"), self.address
        )
        await self.relayed(self.relay, before)
        _, source = self.target.recvfrom(65535)
        self.context.failing = True
        self.target.sendto(b"answer", source)
        await self.relayed(self.relay, before + 1)
        self.assertEqual(self.relay.drops["GSS-API wrap failed"], 1)
        self.assertEqual(self.relay.datagramsToClient, 0)
