"""
Tests for L{socks_twisted._transport.writeNow}: a write sent at once to an
idle TCP socket, and the order of bytes kept whatever the kernel takes.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from socks_twisted._transport import StreamTransport, streamTransport, writeNow

from .client._loopback import LOOPBACK, asyncTest, reactor, withTimeout

#: More than a loopback socket's send and receive buffers hold together
#: when both are made small, so that the kernel takes only part of it.
BIG = bytes(range(256)) * 4 * 1024  # 1 MiB


class _Collector(protocol.Protocol):
    """
    Collects what it receives; fires C{done} once C{expected} bytes came.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))


class _Accepted(protocol.Protocol):
    def __init__(self, made: defer.Deferred[StreamTransport]) -> None:
        self._made = made

    def connectionMade(self) -> None:
        self._made.callback(streamTransport(self.transport))


class WriteNowTCPTests(TestCase):
    """
    L{writeNow} on real loopback TCP connections.
    """

    async def _connection(self, expected: int) -> tuple[Any, _Collector]:
        """
        A loopback connection: its server side's transport (a plain
        C{tcp.Server}, typed C{Any} to read its buffer) and a client that
        collects C{expected} bytes.
        """
        made: defer.Deferred[StreamTransport] = defer.Deferred()
        factory = protocol.ServerFactory.forProtocol(lambda: _Accepted(made))
        port = reactor.listenTCP(0, factory, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        collector = _Collector(expected)
        clientFactory = protocol.ClientFactory.forProtocol(lambda: collector)
        reactor.connectTCP(LOOPBACK, port.getHost().port, clientFactory)
        server: Any = await withTimeout(made, "the connection")
        self.addCleanup(server.abortConnection)
        self.addCleanup(self._closeClient, collector)
        return server, collector

    def _closeClient(self, collector: _Collector) -> None:
        if collector.transport is not None:
            collector.transport.loseConnection()

    @asyncTest
    async def test_idleSocketSentAtOnce(self) -> None:
        """
        To an idle connection, the bytes are in the kernel when L{writeNow}
        returns: nothing is left in Twisted's buffer.
        """
        server, collector = await self._connection(4)
        writeNow(server, b"\x05\x00hi")
        self.assertEqual(server.dataBuffer, b"")
        self.assertEqual(server._tempDataLen, 0)
        self.assertEqual(await withTimeout(collector.done, "the reply"), b"\x05\x00hi")

    @asyncTest
    async def test_orderKeptWhenBufferFull(self) -> None:
        """
        A reply written with L{writeNow} and then relay data written with
        C{write}, more than the socket buffers hold, then another reply and
        more data behind a full buffer: all of it arrives in the order
        written.
        """
        server, collector = await self._connection(2 * len(BIG) + 10)
        server.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writeNow(server, b"reply")
        server.write(BIG)
        writeNow(server, b"again")  # behind BIG, not before it
        server.write(BIG)
        received = await withTimeout(collector.done, "every byte")
        self.assertEqual(len(received), 2 * len(BIG) + 10)
        self.assertEqual(received, b"reply" + BIG + b"again" + BIG)

    @asyncTest
    async def test_partialSendKeepsTheRest(self) -> None:
        """
        When the kernel takes only part of what L{writeNow} sends, the rest
        is written by Twisted, ahead of anything written after it.
        """
        server, collector = await self._connection(len(BIG) + 4)
        server.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writeNow(server, BIG)
        # The kernel took part: the rest waits in Twisted's buffer.
        self.assertTrue(server.dataBuffer or server._tempDataLen)
        server.write(b"tail")
        received = await withTimeout(collector.done, "every byte")
        self.assertEqual(received, BIG + b"tail")


class WriteNowOtherTransportTests(SynchronousTestCase):
    """
    L{writeNow} on anything but Twisted's own TCP connections.
    """

    def test_otherTransportWritten(self) -> None:
        """
        A transport that is not a plain TCP connection (here a test double)
        gets an ordinary C{write}.
        """
        transport = StringTransport()
        writeNow(streamTransport(transport), b"\x05\x00")
        self.assertEqual(transport.value(), b"\x05\x00")
