"""
The server's connection to the other side of a session: the target of a
CONNECT, or the peer a BIND listener accepted.
"""

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .._bandwidth import Throttle
from .._transport import StreamTransport, streamTransport
from ..relay import Relay


@implementer(IHalfCloseableProtocol)
class TargetProtocol(Protocol):
    """
    The other side of a session; every byte it receives goes straight to
    the client's transport, and the relay it is given carries its
    half-closes and its end to the client.

    @ivar bytesReceived: Bytes received from the target so far.
    """

    relay: Relay | None = None
    throttle: Throttle | None = None

    def __init__(self, client: StreamTransport) -> None:
        self.client = client
        self.bytesReceived = 0

    @property
    def stream(self) -> StreamTransport:
        """
        This connection's transport.
        """
        return streamTransport(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.client.write(data)
        self.sent(len(data))

    def sent(self, count: int) -> None:
        """
        C{count} bytes from this side went to the client.
        """
        self.bytesReceived += count
        if self.throttle is not None:
            self.throttle.transferred(count)

    def readConnectionLost(self) -> None:
        if self.relay is not None:
            self.relay.readClosed(self.stream)

    def writeConnectionLost(self) -> None:
        pass  # the relay shut this direction itself

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.relay is not None:
            self.relay.connectionLost(self.stream, reason)


class TargetFactory(Factory):
    """
    Builds the one L{TargetProtocol} of a session.
    """

    noisy = False  # one per session: the session's own log line says enough

    def __init__(self, client: StreamTransport) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress | None) -> TargetProtocol:
        return TargetProtocol(self.client)
