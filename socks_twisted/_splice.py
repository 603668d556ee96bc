"""
Zero-copy relaying on Linux: splice(2) moves each connection's bytes into
a pipe and from the pipe into the other connection, inside the kernel, so
relayed data never enters Python.

The two sockets stay Twisted's transports; while splicing, Twisted's own
reading is stopped and one L{_Side} per socket is registered with the
reactor in its place.  When the relay ends, the sides are unregistered and
the transports are closed the usual way, so the protocols see their
C{connectionLost} as on the copying path.

A direction holds a pipe only while bytes are in flight in it: a pipe is
taken from a small shared L{PipePool} when a read brings data and given
back as soon as the data has been written out, so an idle session holds
none.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable

from twisted.internet.interfaces import IReactorFDSet, IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

#: Whether this platform has splice(2).
AVAILABLE = hasattr(os, "splice")

#: How much one read moves at most: a pipe of this size holds a whole read.
#: 1 MiB is the most an unprivileged process may ask for by default
#: (C{/proc/sys/fs/pipe-max-size}).
PIPE_SIZE = 1 << 20

#: What splice(2) answers when it will not work on a descriptor at all.
_REFUSALS = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP))

_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)

Pipe = tuple[int, int]


class PipePool:
    """
    Pipes for splicing, kept for reuse once drained.

    @ivar keep: How many idle pipes are kept; more are closed when given
        back.
    @ivar size: The capacity asked of each new pipe.
    @ivar inUse: How many pipes are taken and not yet given back.
    """

    def __init__(self, keep: int = 64, size: int = PIPE_SIZE) -> None:
        self.keep = keep
        self.size = size
        self.inUse = 0
        self._idle: list[Pipe] = []

    @property
    def idle(self) -> int:
        """
        How many pipes wait in the pool.
        """
        return len(self._idle)

    def take(self) -> Pipe:
        """
        A pipe, empty, non-blocking, from the pool or new.

        @raise OSError: No pipe could be made (out of descriptors).
        """
        if self._idle:
            pipe = self._idle.pop()
        else:
            pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(pipe[1], fcntl.F_SETPIPE_SZ, self.size)
            except OSError:
                pass  # over the per-user pipe budget: the default size works
        self.inUse += 1
        return pipe

    def give(self, pipe: Pipe) -> None:
        """
        Take back an empty C{pipe}.
        """
        self.inUse -= 1
        if len(self._idle) < self.keep:
            self._idle.append(pipe)
        else:
            _closePipe(pipe)

    def discard(self, pipe: Pipe) -> None:
        """
        Take back a C{pipe} that may still hold bytes, and close it.
        """
        self.inUse -= 1
        _closePipe(pipe)

    def clear(self) -> None:
        """
        Close every idle pipe.
        """
        idle, self._idle = self._idle, []
        for pipe in idle:
            _closePipe(pipe)


def _closePipe(pipe: Pipe) -> None:
    os.close(pipe[0])
    os.close(pipe[1])


#: The pool every splicing relay of this process shares.
pipes = PipePool()


class _Direction:
    """
    One direction of a spliced relay: from C{source}'s socket to C{sink}'s.
    """

    __slots__ = ("counted", "eof", "paused", "pending", "pipe", "sink", "source")

    def __init__(self, counted: Callable[[int], None]) -> None:
        self.source: _Side
        self.sink: _Side
        self.pipe: Pipe | None = None
        self.pending = 0
        self.eof = False
        self.paused = False
        self.counted = counted


@implementer(IReadWriteDescriptor)
class _Side:
    """
    One socket of a spliced relay, as the reactor sees it: readable means
    its outgoing direction can move bytes, writable that its incoming
    direction can deliver what is in flight.
    """

    __slots__ = (
        "_fd",
        "_relay",
        "incoming",
        "outgoing",
        "reading",
        "socket",
        "writing",
    )

    def __init__(self, relay: SpliceRelay, sock: socket.socket) -> None:
        self._relay = relay
        self.socket = sock
        self._fd = sock.fileno()
        self.reading = False
        self.writing = False
        self.outgoing: _Direction
        self.incoming: _Direction

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        self._relay._read(self.outgoing)

    def doWrite(self) -> None:
        self._relay._deliver(self.incoming)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw a hang-up or error with nothing to read.
        self._relay._broken(self)

    def logPrefix(self) -> str:
        return "SpliceRelay"


class SpliceRelay:
    """
    Splice two connected sockets into each other until both directions
    have ended, or one side breaks.

    @param reactor: The reactor the sockets' transports run in.
    @param sockets: The two connected sockets, left and right.
    @param counted: For each direction (left to right, right to left),
        called with the number of bytes each time some are delivered.
    @param finished: Called once when both directions have ended cleanly
        (end-of-file each way, everything delivered, each side's write
        direction shut).
    @param broken: Called once with the index of a side whose socket
        failed (a reset, an error writing to it).
    @param fallBack: Called once, with nothing in flight, if splicing
        cannot go on: the caller relays by copying from then on.
    """

    __slots__ = (
        "_broke",
        "_detached",
        "_directions",
        "_fallBack",
        "_finished",
        "_pool",
        "_reactor",
        "_sides",
        "readSize",
    )

    def __init__(
        self,
        reactor: IReactorFDSet,
        sockets: tuple[socket.socket, socket.socket],
        counted: tuple[Callable[[int], None], Callable[[int], None]],
        finished: Callable[[], None],
        broken: Callable[[int], None],
        fallBack: Callable[[], None],
        pool: PipePool = pipes,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._finished = finished
        self._broke = broken
        self._fallBack = fallBack
        self._sides = (_Side(self, sockets[0]), _Side(self, sockets[1]))
        self._directions = (_Direction(counted[0]), _Direction(counted[1]))
        for index, direction in enumerate(self._directions):
            direction.source = self._sides[index]
            direction.sink = self._sides[1 - index]
            direction.source.outgoing = direction
            direction.sink.incoming = direction
        self._detached = False
        self.readSize = PIPE_SIZE

    def start(self) -> None:
        """
        Begin: read both sockets.
        """
        for side in self._sides:
            self._update(side)

    def pause(self, index: int) -> None:
        """
        Stop reading side C{index} (a throttle, a hold).
        """
        direction = self._directions[index]
        direction.paused = True
        self._update(direction.source)

    def resume(self, index: int) -> None:
        """
        Read side C{index} again.
        """
        direction = self._directions[index]
        direction.paused = False
        self._update(direction.source)

    def endOfInput(self, index: int) -> None:
        """
        Side C{index} already sent end-of-file (seen before splicing began).
        """
        self._ended(self._directions[index])

    def detach(self) -> None:
        """
        Stop splicing: unregister both sides and release the pipes (bytes
        still in flight are dropped with theirs).  Idempotent.
        """
        if self._detached:
            return
        self._detached = True
        for side in self._sides:
            if side.reading:
                self._reactor.removeReader(side)
            if side.writing:
                self._reactor.removeWriter(side)
            side.reading = side.writing = False
        for direction in self._directions:
            pipe, direction.pipe = direction.pipe, None
            if pipe is not None:
                if direction.pending:
                    self._pool.discard(pipe)
                else:
                    self._pool.give(pipe)
            direction.pending = 0

    @property
    def holdsPipes(self) -> int:
        """
        How many pipes this relay holds now.
        """
        return sum(direction.pipe is not None for direction in self._directions)

    def _read(self, direction: _Direction) -> None:
        if self._detached or direction.eof or direction.pending or direction.paused:
            return
        source = direction.source
        try:
            pipe = direction.pipe or self._pool.take()
        except OSError:
            self._refused(source)  # out of descriptors for a pipe
            return
        direction.pipe = pipe
        try:
            count = os.splice(source.fileno(), pipe[1], self.readSize, flags=_FLAGS)
        except BlockingIOError:
            count = -1
        except OSError as e:
            if e.errno in _REFUSALS:
                self._refused(source)
            else:
                self._broken(source)
            return
        if count <= 0:
            direction.pipe = None
            self._pool.give(pipe)
            if count == 0:
                self._ended(direction)
            return
        direction.pending = count
        self._deliver(direction)

    def _deliver(self, direction: _Direction) -> None:
        if self._detached or direction.pipe is None:
            return
        sink = direction.sink
        try:
            count = os.splice(
                direction.pipe[0], sink.fileno(), direction.pending, flags=_FLAGS
            )
        except BlockingIOError:
            count = 0
        except OSError:
            self._broken(sink)
            return
        direction.pending -= count
        if not direction.pending:
            pipe, direction.pipe = direction.pipe, None
            self._pool.give(pipe)
        self._update(direction.source)
        self._update(sink)
        if count:
            direction.counted(count)

    def _ended(self, direction: _Direction) -> None:
        """
        C{direction}'s source sent end-of-file: shut the sink's write
        direction (nothing is in flight: a source is read only when its
        pipe is empty).
        """
        if direction.eof:
            return
        direction.eof = True
        self._update(direction.source)
        try:
            direction.sink.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self._broken(direction.sink)
            return
        if all(d.eof and not d.pending for d in self._directions):
            self.detach()
            self._finished()

    def _refused(self, side: _Side) -> None:
        """
        Splicing cannot go on (the kernel refuses this socket, or no pipe
        can be made): hand both sockets back to copying, unless bytes are
        in flight in a pipe, which only splicing can deliver.
        """
        if any(d.pending for d in self._directions):
            self._broken(side)
            return
        self.detach()
        self._fallBack()

    def _broken(self, side: _Side) -> None:
        if self._detached:
            return
        self.detach()
        self._broke(self._sides.index(side))

    def _update(self, side: _Side) -> None:
        """
        Register C{side} for exactly the events its directions wait for.
        """
        if self._detached:
            return
        outgoing = side.outgoing
        reading = not (outgoing.eof or outgoing.pending or outgoing.paused)
        writing = side.incoming.pending > 0
        if reading != side.reading:
            side.reading = reading
            if reading:
                self._reactor.addReader(side)
            else:
                self._reactor.removeReader(side)
        if writing != side.writing:
            side.writing = writing
            if writing:
                self._reactor.addWriter(side)
            else:
                self._reactor.removeWriter(side)
