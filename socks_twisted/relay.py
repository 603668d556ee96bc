"""
The byte pump between two established connections.

Once a session is established, each side's protocol writes what it receives
straight to the other side's transport; this module owns everything else:
flow control both ways, half-close, and how the end of one side ends the
other.
"""

import socket
import struct
from collections.abc import Callable

from twisted.internet import error
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from ._bandwidth import FLOW_CONTROL, PauseGate
from ._transport import StreamTransport, socketOf

_LINGER_RESET = struct.pack("ii", 1, 0)


def resetConnection(transport: StreamTransport) -> None:
    """
    End C{transport} with a TCP reset where it is a TCP socket (SO_LINGER 0
    makes close() send RST), so that a reset seen on one side of the relay
    reaches the other side as a reset, not as a clean end of stream.
    """
    if ITCPTransport.providedBy(transport):
        try:
            socketOf(transport).setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET
            )
        except (OSError, AttributeError):
            pass  # already closed, or not a real socket: abort is enough
    transport.abortConnection()


@implementer(IPushProducer)
class _Reader:
    """
    One side's reading, as the producer for the other side's writing.

    Its pauses go through a L{PauseGate}: flow control (the other side's
    write buffer) is one reason, a bandwidth throttle another, and one's
    resume never undoes the other's pause.  Its C{stopProducing} does
    nothing: the relay decides how the other side ends (Twisted would
    otherwise close the producer gracefully even when the consumer was
    reset).  Once the side has seen end-of-file, resuming it would re-arm a
    reader on a finished socket, so it is ignored.
    """

    def __init__(self, transport: StreamTransport) -> None:
        self.transport = transport
        self.eof = False
        self.gate = PauseGate(self._pause, self._resume)

    def _pause(self) -> None:
        if not self.eof:
            self.transport.pauseProducing()

    def _resume(self) -> None:
        if not self.eof:
            self.transport.resumeProducing()

    def pauseProducing(self) -> None:
        self.gate.pause(FLOW_CONTROL)

    def resumeProducing(self) -> None:
        self.gate.resume(FLOW_CONTROL)

    def stopProducing(self) -> None:
        pass


class Relay:
    """
    Join two established connections.

    Each side's protocol calls L{readClosed} when its peer half-closes and
    L{connectionLost} when its connection ends; the relay carries the event
    to the other side: end-of-file becomes a write-side shutdown of the other
    connection while the other direction keeps flowing; a clean end becomes a
    clean close; a reset or error becomes a reset.

    @ivar finished: Called once, when both connections have ended.
    """

    def __init__(
        self,
        left: StreamTransport,
        right: StreamTransport,
        finished: Callable[[], None] = lambda: None,
    ) -> None:
        self._readers = (_Reader(left), _Reader(right))
        self._writeShut = [False, False]
        self._lost = [False, False]
        self._finished = finished

    def _index(self, transport: StreamTransport) -> int:
        return 0 if self._readers[0].transport is transport else 1

    def gate(self, transport: StreamTransport) -> PauseGate:
        """
        What pauses and resumes reading from C{transport}, for a reason of
        the caller's (a throttle, a hold) besides flow control.
        """
        return self._readers[self._index(transport)].gate

    def start(self) -> None:
        """
        Make each side's write buffer throttle the other side's reading.
        """
        left, right = self._readers
        left.transport.registerProducer(right, True)
        right.transport.registerProducer(left, True)

    def readClosed(self, transport: StreamTransport) -> None:
        """
        C{transport}'s peer sent end-of-file: shut the other side's write
        direction once its buffer is flushed.
        """
        this = self._index(transport)
        other = 1 - this
        self._readers[this].eof = True
        otherTransport = self._readers[other].transport
        if self._lost[other]:
            return
        self._writeShut[other] = True
        otherTransport.loseWriteConnection()
        self._closeIfDone(other)
        self._closeIfDone(this)

    def _closeIfDone(self, index: int) -> None:
        """
        A side whose both directions are finished is closed: Twisted leaves a
        half-closed socket open until told.
        """
        if self._readers[index].eof and self._writeShut[index]:
            if not self._lost[index]:
                self._readers[index].transport.loseConnection()

    def connectionLost(self, transport: StreamTransport, reason: Failure) -> None:
        """
        C{transport}'s connection ended for C{reason}: end the other side the
        same way, cleanly or with a reset.
        """
        this = self._index(transport)
        other = 1 - this
        if self._lost[this]:
            return
        self._lost[this] = True
        if not self._lost[other]:
            otherTransport = self._readers[other].transport
            otherTransport.unregisterProducer()
            if isinstance(reason.value, error.ConnectionDone):
                otherTransport.loseConnection()
            else:
                resetConnection(otherTransport)
        if all(self._lost):
            self._finished()
