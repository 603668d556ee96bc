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

from twisted.internet import tcp
from twisted.internet.interfaces import IAddress, IPushProducer, ITransport

# The wrapper's class is not exported; it is the one haproxy: listeners use.
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper

#: The transports whose socket L{writeNow} may write to directly: Twisted's
#: own TCP connections, not subclasses that may wrap or filter.
_PLAIN_TCP = (tcp.Server, tcp.Client)


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


def carrier(transport: StreamTransport) -> StreamTransport:
    """
    The transport whose socket carries C{transport}'s bytes as they are:
    under a PROXY-protocol wrapper (a C{haproxy:} listener, whose header is
    read before the first byte reaches the protocol), the connection it
    wraps; otherwise C{transport} itself.  The wrapper passes every call
    on to it.
    """
    while isinstance(transport, HAProxyProtocolWrapper):
        transport = streamTransport(transport.transport)
    return transport


def idleSocket(transport: StreamTransport) -> Any:
    """
    The socket under C{transport} if it is one of Twisted's plain TCP
    connections, still open, with nothing waiting in its write buffer;
    otherwise C{None}.

    Only then may bytes go to the socket directly without overtaking bytes
    Twisted still holds: TLS, a test double or a busy buffer is left to
    Twisted.  (A PROXY-protocol wrapper is looked through: see
    L{carrier}.)
    """
    plain: Any = carrier(transport)
    if (
        type(plain) in _PLAIN_TCP
        and plain.connected
        and not plain.disconnecting
        and not plain._writeDisconnecting
        and not plain._tempDataLen
        and len(plain.dataBuffer) == plain.offset
    ):
        return plain.socket
    return None


def writeNow(transport: StreamTransport, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it at once when the transport is
    a plain TCP connection with nothing buffered.

    Twisted's C{write} buffers and sends on the reactor's next turn, which
    costs two C{epoll_ctl} calls and a turn for every handshake reply; a
    reply sent straight to an idle socket costs one C{send}.  What the
    kernel does not take, and every write to any other transport (TLS, a
    wrapper, a test double), goes through C{write} as before, so the order
    of bytes is kept either way.
    """
    sock = idleSocket(transport)
    if sock is not None:
        try:
            sent = sock.send(data)
        except OSError:
            # Would block, or broken: Twisted's own write finds out and
            # reports it the usual way.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
