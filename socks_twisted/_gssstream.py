"""
The data path of a SOCKS5 session under GSS-API per-message protection (RFC
1961 section 5): every byte after the protection-level subnegotiation goes
in MTYP 3 messages, each the C{gss_wrap} output of a piece of the stream;
every datagram of a UDP association is one such message.

Used by both the server session and the client; neither imports
python-gssapi here: the context is anything with C{wrap} and C{unwrap} as
L{socks_twisted._gss}'s contexts have them.
"""

from collections.abc import Iterable
from typing import Protocol

from twisted.internet.interfaces import IAddress, IPushProducer

from ._transport import StreamTransport
from ._wire import (
    GSSAPIMessageReader,
    MessageType,
    ProtectionLevel,
    ProtocolError,
    encapsulatedMessage,
    readEncapsulatedDatagram,
)

_ENCAPSULATED = frozenset({MessageType.ENCAPSULATED})


class WrappingContext(Protocol):
    """
    What the data path uses of an established GSS-API context.
    """

    def wrap(self, data: bytes, level: ProtectionLevel) -> list[bytes]:
        """
        Wrap C{data} at C{level}, cut to fit MTYP 3 messages.
        """

    def unwrap(self, token: bytes, level: ProtectionLevel) -> bytes:
        """
        Unwrap one MTYP 3 token at C{level}.
        """


class Unwrapper:
    """
    Reads MTYP 3 messages from the peer's bytes, in whatever chunks they
    arrive, and returns the data they carry.
    """

    def __init__(self, context: WrappingContext, level: ProtectionLevel) -> None:
        self._context = context
        self._level = level
        self._reader = GSSAPIMessageReader()

    def unwrap(self, data: bytes) -> bytes:
        """
        The data of every whole MTYP 3 message now received.

        @raise ProtocolError: If the bytes are not MTYP 3 messages, or a
            token does not unwrap (tampered, replayed, another context's).
        """
        self._reader.receiveData(data)
        pieces: list[bytes] = []
        while True:
            message = self._reader.nextMessage(_ENCAPSULATED)
            if message is None:
                return b"".join(pieces)
            try:
                pieces.append(self._context.unwrap(message.token, self._level))
            except Exception as e:  # GSSAPIError, without importing gssapi
                raise ProtocolError(f"GSS-API unwrap failed: {e}") from None


class DatagramTooLongError(ProtocolError):
    """
    A datagram too long to wrap into one RFC 1961 message.
    """


class DatagramWrapper:
    """
    Protects the datagrams of a UDP association: each, SOCKS UDP header
    included, is one MTYP 3 message.
    """

    def __init__(self, context: WrappingContext, level: ProtectionLevel) -> None:
        self._context = context
        self._level = level

    def wrap(self, datagram: bytes) -> bytes:
        """
        The datagram to send for C{datagram}.

        @raise DatagramTooLongError: If its C{gss_wrap} output would not fit in
            one message (65535 octets of token).
        @raise ProtocolError: If wrapping fails.
        """
        try:
            tokens = self._context.wrap(datagram, self._level)
        except Exception as e:  # GSSAPIError, without importing gssapi
            raise ProtocolError(f"GSS-API wrap failed: {e}") from None
        if len(tokens) != 1:
            raise DatagramTooLongError(
                f"a datagram of {len(datagram)} octets is too long to wrap"
                " in one GSSAPI message"
            )
        return encapsulatedMessage(tokens[0])

    def unwrap(self, datagram: bytes) -> bytes:
        """
        The datagram that C{datagram}, as received, carries.

        @raise ProtocolError: If it is not one MTYP 3 message or does not
            unwrap (tampered, another context's, not encrypted at the
            confidentiality level).
        """
        token = readEncapsulatedDatagram(datagram)
        try:
            return self._context.unwrap(token, self._level)
        except Exception as e:  # GSSAPIError, without importing gssapi
            raise ProtocolError(f"GSS-API unwrap failed: {e}") from None


class ProtectedTransport:
    """
    A stream transport whose writes go out wrapped in MTYP 3 messages;
    everything else is the underlying transport's.  It has no socket of its
    own to write to (no C{getHandle}), so that nothing writes around the
    wrapping: L{socks_twisted._transport.writeNow} writes through it, and a
    relay copies rather than splices.

    @ivar transport: The underlying transport.
    """

    def __init__(
        self,
        transport: StreamTransport,
        context: WrappingContext,
        level: ProtectionLevel,
    ) -> None:
        self.transport = transport
        self._context = context
        self._level = level

    @property
    def disconnecting(self) -> bool:
        """
        Whether the underlying transport is closing.
        """
        return self.transport.disconnecting

    @disconnecting.setter
    def disconnecting(self, value: bool) -> None:
        self.transport.disconnecting = value

    def write(self, data: bytes) -> None:
        """
        Wrap C{data} and send it; a failure to wrap (which no healthy
        context has) ends the connection.
        """
        if not data:
            return
        try:
            tokens = self._context.wrap(bytes(data), self._level)
        except Exception:  # GSSAPIError, without importing gssapi
            self.transport.abortConnection()
            return
        self.transport.write(b"".join(encapsulatedMessage(t) for t in tokens))

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """
        Wrap and send the pieces as one write.
        """
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close once the buffer is flushed."""
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        """Close now, discarding the buffer."""
        self.transport.abortConnection()

    def loseWriteConnection(self) -> None:
        """Shut the write side once the buffer is flushed."""
        self.transport.loseWriteConnection()

    def pauseProducing(self) -> None:
        """Stop reading."""
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Read again."""
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """Stop for good."""
        stop = getattr(self.transport, "stopProducing", None)
        if stop is not None:
            stop()

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """Throttle C{producer} by the underlying write buffer."""
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """Forget the producer."""
        self.transport.unregisterProducer()

    def getHost(self) -> IAddress:
        """The local address."""
        return self.transport.getHost()

    def getPeer(self) -> IAddress:
        """The remote address."""
        return self.transport.getPeer()
