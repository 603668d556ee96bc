"""
L{ProtectedTransport}: a transport whose writes go out wrapped in RFC 1961
MTYP 3 messages, everything else being the underlying transport's; and
L{DatagramWrapper}, which makes each datagram one such message.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from socks_twisted._gssstream import (
    DatagramTooLongError,
    DatagramWrapper,
    ProtectedTransport,
)
from socks_twisted._transport import streamTransport
from socks_twisted._wire import ProtectionLevel, ProtocolError, encapsulatedMessage

from .server._fakes import HalfCloseTransport


class _Context:
    """
    Wraps by tagging each piece (cut at C{chunk} octets, as a real context
    cuts at its wrap size limit); can be told to fail; unwraps only its own
    tags.
    """

    failing = False
    chunk = 1000

    def wrap(self, data: bytes, level: ProtectionLevel) -> list[bytes]:
        if self.failing:
            raise RuntimeError("no context")
        return [
            b"<" + data[start : start + self.chunk] + b">"
            for start in range(0, len(data), self.chunk)
        ]

    def unwrap(self, token: bytes, level: ProtectionLevel) -> bytes:
        if not (token.startswith(b"<") and token.endswith(b">")):
            raise RuntimeError("not our token")
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


class DatagramWrapperTests(SynchronousTestCase):
    """
    Each datagram, whole, is one MTYP 3 message.
    """

    def setUp(self) -> None:
        self.context = _Context()
        self.wrapper = DatagramWrapper(self.context, ProtectionLevel.CONFIDENTIALITY)

    def test_roundTrip(self) -> None:
        """
        A datagram wraps into one message, which unwraps back to it.
        """
        datagram = b"\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x35query"
        wrapped = self.wrapper.wrap(datagram)
        self.assertEqual(wrapped, encapsulatedMessage(b"<" + datagram + b">"))
        self.assertEqual(self.wrapper.unwrap(wrapped), datagram)

    def test_tooLong(self) -> None:
        """
        A datagram whose wrapping would take two messages is refused with
        L{DatagramTooLongError}, not cut.
        """
        error = self.assertRaises(
            DatagramTooLongError, self.wrapper.wrap, b"x" * (self.context.chunk + 1)
        )
        self.assertIn("1001 octets", error.reason)

    def test_wrapFails(self) -> None:
        """
        A context that cannot wrap gives a L{ProtocolError} with the reason.
        """
        self.context.failing = True
        error = self.assertRaises(ProtocolError, self.wrapper.wrap, b"data")
        self.assertIn("no context", error.reason)

    def test_unwrapRefuses(self) -> None:
        """
        Not one MTYP 3 message, or a token the context does not unwrap: a
        L{ProtocolError}.
        """
        for datagram, reason in [
            (b"\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x35plain", "version 0"),
            (encapsulatedMessage(b"<a>") + b"x", "octets after"),
            (encapsulatedMessage(b"forged"), "not our token"),
        ]:
            with self.subTest(datagram=datagram):
                error = self.assertRaises(ProtocolError, self.wrapper.unwrap, datagram)
                self.assertIn(reason, error.reason)
