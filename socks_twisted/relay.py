"""
The byte pump between two established connections.

Two paths move the bytes.  On Linux, between two plain TCP connections, the
relay splices (see L{socks_twisted._splice}): the kernel moves the bytes
and Python only sees how many.  Everywhere else (TLS, UNIX sockets, the
PROXY-protocol wrapper, other platforms, or when the kernel refuses), each
side's protocol writes what it receives straight to the other side's
transport: the copying path.  This module owns everything else, on both
paths: flow control both ways, half-close, and how the end of one side ends
the other.
"""

import socket
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from . import _splice
from ._bandwidth import FLOW_CONTROL, PauseGate
from ._transport import StreamTransport, carrier, idleSocket, socketOf

#: The relay's paths, as the session log names them.
SPLICE = "splice"
COPY = "copy"

#: Bytes per read on the copying path once relaying.  Twisted reads 64 KiB
#: at a time, and every read costs a system call and a reactor turn: 256
#: KiB cut the proxy's CPU per GB copied from 0.63 to 0.47 s up and from
#: 0.71 to 0.47 s down (bench/compare.py --only bulk --server-args
#: "--relay copy", 3 rounds of 1 GiB).
COPY_READ_SIZE = 256 * 1024

#: Bytes per read, on either path, while a bandwidth cap is in force: a
#: direction runs ahead of its cap by at most one read.
CAPPED_READ_SIZE = 64 * 1024

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

    __slots__ = ("eof", "gate", "index", "spliced", "transport")

    def __init__(self, transport: StreamTransport, index: int) -> None:
        self.transport = transport
        self.index = index
        self.eof = False
        self.gate = PauseGate(self._pause, self._resume)
        self.spliced: _splice.SpliceRelay | None = None

    def _pause(self) -> None:
        if self.spliced is not None:
            self.spliced.pause(self.index)
        elif not self.eof:
            self.transport.pauseProducing()

    def _resume(self) -> None:
        if self.spliced is not None:
            self.spliced.resume(self.index)
        elif not self.eof:
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

    On the splicing path the protocols receive nothing: the relay reports
    the bytes it moved through C{counted}, and sees half-closes and resets
    itself.

    @param finished: Called once, when both connections have ended.
    @param splice: Whether to splice when both sides allow it.
    @param counted: Called, for each direction (left to right, right to
        left), with the number of bytes the splicing path delivered.

    @ivar path: L{SPLICE} or L{COPY}: how the bytes move (once started).
    """

    # One a relayed session: kept small.
    __slots__ = (
        "_bothEnded",
        "_counted",
        "_finished",
        "_lost",
        "_readSize",
        "_readers",
        "_splice",
        "_spliced",
        "_writeShut",
        "path",
    )

    def __init__(
        self,
        left: StreamTransport,
        right: StreamTransport,
        finished: Callable[[], None] = lambda: None,
        splice: bool = False,
        counted: tuple[Callable[[int], None], Callable[[int], None]] = (
            lambda count: None,
            lambda count: None,
        ),
    ) -> None:
        self._readers = (_Reader(left, 0), _Reader(right, 1))
        self._writeShut = [False, False]
        self._lost = [False, False]
        self._finished = finished
        self._splice = splice and _splice.AVAILABLE
        self._counted = counted
        self._spliced: _splice.SpliceRelay | None = None
        self._readSize: int | None = None
        # Once both directions have ended cleanly, however a side's closing
        # is reported (a hang-up seen while Twisted waits to close it
        # counts as a lost connection), it must not reset the other.
        self._bothEnded = False
        self.path = COPY

    def _index(self, transport: StreamTransport) -> int:
        return 0 if self._readers[0].transport is transport else 1

    def gate(self, transport: StreamTransport) -> PauseGate:
        """
        What pauses and resumes reading from C{transport}, for a reason of
        the caller's (a throttle, a hold) besides flow control.
        """
        return self._readers[self._index(transport)].gate

    def limitReads(self, size: int) -> None:
        """
        Read at most C{size} bytes at a time (a bandwidth cap is kept to
        within one read).
        """
        self._readSize = size
        if self._spliced is not None:
            self._spliced.readSize = size
        else:
            self._setCopyReadSize()

    def start(self) -> None:
        """
        Begin relaying: splice if allowed and both sides are plain TCP
        connections with nothing left in their write buffers; otherwise make
        each side's write buffer throttle the other side's reading.
        """
        carriers = [carrier(reader.transport) for reader in self._readers]
        left, right = (idleSocket(carrier) for carrier in carriers)
        if not (self._splice and left is not None and right is not None):
            self._copy()
            return
        reactor: Any = carriers[0]
        spliced = _splice.SpliceRelay(
            reactor.reactor,
            (left, right),
            self._counted,
            self._splicedEnd,
            self._splicedBroken,
            self._fallBack,
        )
        if self._readSize is not None:
            spliced.readSize = self._readSize
        self._spliced = spliced
        self.path = SPLICE
        for reader in self._readers:
            reader.transport.pauseProducing()  # Twisted stops reading
            reader.spliced = spliced
            if reader.gate.paused:
                spliced.pause(reader.index)
        spliced.start()

    def _copy(self) -> None:
        self.path = COPY
        left, right = self._readers
        self._setCopyReadSize()
        left.transport.registerProducer(right, True)
        right.transport.registerProducer(left, True)

    def _setCopyReadSize(self) -> None:
        for reader in self._readers:
            transport: Any = reader.transport
            if hasattr(transport, "bufferSize"):
                transport.bufferSize = self._readSize or COPY_READ_SIZE

    def _fallBack(self) -> None:
        """
        The kernel would not splice: copy instead, from where splicing left
        off (nothing was in flight).
        """
        self._spliced = None
        for reader in self._readers:
            reader.spliced = None
            if not (reader.gate.paused or reader.eof):
                reader.transport.resumeProducing()
        self._copy()

    def _splicedEnd(self) -> None:
        """
        Both directions ended cleanly while splicing (each side's write
        direction is shut already): close both connections.
        """
        self._bothEnded = True
        for reader in self._readers:
            reader.eof = True
            reader.transport.loseConnection()

    def _splicedBroken(self, index: int) -> None:
        """
        Side C{index} failed while splicing: end it now; its
        L{connectionLost} resets the other side.
        """
        self._readers[index].transport.abortConnection()

    @property
    def holdsPipes(self) -> int:
        """
        How many pipes the splicing path holds now (none when idle).
        """
        return self._spliced.holdsPipes if self._spliced is not None else 0

    def readClosed(self, transport: StreamTransport) -> None:
        """
        C{transport}'s peer sent end-of-file: shut the other side's write
        direction once its buffer is flushed.
        """
        this = self._index(transport)
        other = 1 - this
        self._readers[this].eof = True
        if self._spliced is not None:
            self._spliced.endOfInput(this)
            return
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
        if self._spliced is not None:
            self._spliced.detach()
        if not self._lost[other]:
            otherTransport = self._readers[other].transport
            otherTransport.unregisterProducer()
            if self._bothEnded or isinstance(reason.value, error.ConnectionDone):
                otherTransport.loseConnection()
            else:
                resetConnection(otherTransport)
        if all(self._lost):
            self._finished()
