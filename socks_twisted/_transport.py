"""
What the server and the relay use of a stream transport, typed once.

Twisted's transports implement these methods across several interfaces
(L{ITCPTransport<twisted.internet.interfaces.ITCPTransport>},
L{IConsumer<twisted.internet.interfaces.IConsumer>},
L{IPushProducer<twisted.internet.interfaces.IPushProducer>},
L{IHalfCloseableProtocol<twisted.internet.interfaces.IHalfCloseableProtocol>}'s
counterpart C{loseWriteConnection}), and C{Protocol.transport} is typed as a
bare L{ITransport}.  Rather than cast at every call, code takes a
L{StreamTransport} from L{streamTransport} once.
"""

from typing import Any, Protocol, cast

from twisted.internet.interfaces import IAddress, IPushProducer, ITransport


class StreamTransport(Protocol):
    """
    A connected stream transport that can half-close, abort, and take part
    in flow control both as producer and as consumer.
    """

    disconnecting: bool

    def write(self, data: bytes) -> None:
        """Send C{data}."""

    def loseConnection(self) -> None:
        """Close once the buffer is flushed."""

    def abortConnection(self) -> None:
        """Close now, discarding the buffer."""

    def loseWriteConnection(self) -> None:
        """Shut the write side once the buffer is flushed."""

    def pauseProducing(self) -> None:
        """Stop reading."""

    def resumeProducing(self) -> None:
        """Read again."""

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """Throttle C{producer} by this transport's write buffer."""

    def unregisterProducer(self) -> None:
        """Forget the producer."""

    def getHost(self) -> IAddress:
        """The local address."""

    def getPeer(self) -> IAddress:
        """The remote address."""


def streamTransport(transport: ITransport | None) -> StreamTransport:
    """
    View a connected protocol's transport as a L{StreamTransport}.

    Every transport a server session or relay is given (TCP, UNIX, TLS over
    either, the PROXY-protocol wrapper) provides these methods; the cast is
    the one place that relies on it.
    """
    if transport is None:
        raise RuntimeError("the protocol is not connected")
    return cast(StreamTransport, transport)


def socketOf(transport: StreamTransport) -> Any:
    """
    The socket under C{transport}, or C{None} when it has none (a test
    double, a wrapping transport without C{getHandle}).
    """
    getHandle = getattr(transport, "getHandle", None)
    return getHandle() if getHandle is not None else None
