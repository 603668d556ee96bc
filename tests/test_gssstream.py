"""
L{ProtectedTransport}: a transport whose writes go out wrapped in RFC 1961
MTYP 3 messages, everything else being the underlying transport's.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from socks_twisted._gssstream import ProtectedTransport
from socks_twisted._transport import streamTransport
from socks_twisted._wire import ProtectionLevel, encapsulatedMessage

from .server._fakes import HalfCloseTransport


class _Context:
    """
    Wraps by tagging each piece; can be told to fail.
    """

    failing = False

    def wrap(self, data: bytes, level: ProtectionLevel) -> list[bytes]:
        if self.failing:
            raise RuntimeError("no context")
        return [b"<" + data + b">"]

    def unwrap(self, token: bytes, level: ProtectionLevel) -> bytes:
        return token[1:-1]


@implementer(IPushProducer)
class _Producer:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class ProtectedTransportTests(SynchronousTestCase):
    """
    Writes are wrapped; the rest passes through.
    """

    def setUp(self) -> None:
        self.under = HalfCloseTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 1080),
            peerAddress=IPv4Address("TCP", "127.0.0.2", 5000),
        )
        self.context = _Context()
        self.transport = ProtectedTransport(
            streamTransport(self.under), self.context, ProtectionLevel.INTEGRITY
        )

    def test_writesWrapped(self) -> None:
        """
        Every write, and a sequence as one write, goes out as MTYP 3
        messages of what the context wrapped; an empty write sends nothing.
        """
        self.transport.write(b"")
        self.transport.write(b"abc")
        self.transport.writeSequence([b"d", b"ef"])
        self.assertEqual(
            self.under.value(),
            encapsulatedMessage(b"<abc>") + encapsulatedMessage(b"<def>"),
        )

    def test_wrapFailureAborts(self) -> None:
        """
        A context that cannot wrap ends the connection at once; nothing
        goes out unwrapped.
        """
        self.context.failing = True
        self.transport.write(b"secret")
        self.assertEqual(self.under.value(), b"")
        self.assertTrue(self.under.aborted)

    def test_passesThrough(self) -> None:
        """
        Closing, half-closing, flow control and addresses are the
        underlying transport's.
        """
        self.assertEqual(self.transport.getHost(), self.under.getHost())
        self.assertEqual(self.transport.getPeer(), self.under.getPeer())
        self.transport.pauseProducing()
        self.assertEqual(self.under.producerState, "paused")
        self.transport.resumeProducing()
        self.assertEqual(self.under.producerState, "producing")
        self.transport.stopProducing()
        self.assertEqual(self.under.producerState, "stopped")
        producer = _Producer()
        self.transport.registerProducer(producer, True)
        self.assertIs(self.under.producer, producer)
        self.transport.unregisterProducer()
        self.assertIsNone(self.under.producer)
        self.assertFalse(self.transport.disconnecting)
        self.transport.disconnecting = True
        self.assertTrue(self.under.disconnecting)

    def test_closing(self) -> None:
        """
        Each way of closing is passed on.
        """
        self.transport.loseWriteConnection()
        self.assertTrue(self.under.writeShut)
        self.transport.abortConnection()
        self.assertTrue(self.under.aborted)
        other = HalfCloseTransport()
        ProtectedTransport(
            streamTransport(other), self.context, ProtectionLevel.INTEGRITY
        ).loseConnection()
        self.assertTrue(other.disconnecting)
        self.assertFalse(other.aborted)
