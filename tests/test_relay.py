"""
The relay on real loopback TCP.

Fakes cannot model a half-closed socket, a TCP reset or the kernel's socket
buffers, so these tests run everything as real TCP connections on 127.0.0.1
inside trial's own reactor: our L{SOCKSServerFactory}, in-process target
servers, and in-process clients that speak SOCKS by writing the handshake
bytes by hand, as hex taken from RFC 1928 and the SOCKS4/SOCKS4a texts.

Every test waits, before it ends, for every connection it made to close and
for the server to log the end of every session it accepted (the server logs
that event only once both of a session's connections are gone), so trial's
reactor is clean afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
import struct
import sys
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from twisted.internet import defer, tcp
from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.defer import Deferred, gatherResults, race, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IListeningPort,
    IPushProducer,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from socks_twisted import _splice
from socks_twisted.relay import COPY, COPY_READ_SIZE, SPLICE
from socks_twisted.server import SOCKSServerFactory, SOCKSServerProtocol
from socks_twisted.server._outbound import ConnectReactor

reactor = cast(ConnectReactor, _globalReactor)

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB

#: The size of each write a L{RandomSender} makes.
CHUNK = 64 * KiB

#: How long any single step of a test may take before it counts as hung.
STEP_TIMEOUT = 30.0

# The handshake bytes, written by hand.

#: RFC 1928 section 3: VER 5, NMETHODS 1, METHODS [X'00' NO AUTHENTICATION
#: REQUIRED].
SOCKS5_GREETING = bytes.fromhex("05 01 00")

#: RFC 1928 section 3: the server's choice, VER 5, METHOD X'00'.
SOCKS5_NO_AUTH_CHOSEN = bytes.fromhex("05 00")


def socks5ConnectIPv4(port: int) -> bytes:
    """
    RFC 1928 section 4: VER 5, CMD 1 (CONNECT), RSV 0, ATYP 1 (IPv4),
    DST.ADDR 127.0.0.1, DST.PORT in network order.
    """
    return bytes.fromhex("05 01 00 01 7f000001") + struct.pack("!H", port)


#: What a SOCKS5 client reads back before any relayed byte: the method
#: selection (2 bytes) and a reply with an IPv4 BND.ADDR (4 + 4 + 2 bytes).
SOCKS5_HANDSHAKE_REPLY_LENGTH = 2 + 10


def socks4aConnectLocalhost(port: int) -> bytes:
    """
    The SOCKS4a CONNECT request: VN 4, CD 1, DSTPORT, DSTIP 0.0.0.1 (which
    says "a host name follows"), an empty USERID and its NUL, then the host
    name "localhost" and its NUL.
    """
    return (
        bytes.fromhex("04 01")
        + struct.pack("!H", port)
        + bytes.fromhex("00000001 00")
        + b"localhost\x00"
    )


#: The SOCKS4 reply: VN 0, CD, DSTPORT, DSTIP.
SOCKS4_REPLY_LENGTH = 8


# Small tools.


class Notifier(Generic[T]):
    """
    A one-shot event that any number of callers may wait for, before or
    after it happened.
    """

    def __init__(self) -> None:
        self.fired = False
        self._value: T | None = None
        self._waiting: list[Deferred[T]] = []

    def fire(self, value: T) -> None:
        """
        Record that the event happened; later calls are ignored.
        """
        if self.fired:
            return
        self.fired, self._value = True, value
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(value)

    @property
    def value(self) -> T:
        """
        What the event carried; only once it fired.
        """
        assert self.fired, "the event has not happened"
        return cast(T, self._value)

    def wait(self) -> Deferred[T]:
        """
        A new L{Deferred} that fires with the event's value.
        """
        if self.fired:
            return succeed(cast(T, self._value))
        d: Deferred[T] = Deferred()
        self._waiting.append(d)
        return d


def within(d: Deferred[T], what: str, seconds: float = STEP_TIMEOUT) -> Deferred[T]:
    """
    C{d}, failing with a message naming C{what} if it takes longer than
    C{seconds}.
    """

    def timedOut(failure: Failure) -> Failure:
        if failure.check(defer.TimeoutError):
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        return failure

    d.addTimeout(seconds, reactor)
    d.addErrback(timedOut)
    return d


def sleep(seconds: float) -> Deferred[None]:
    """
    Let the reactor run for C{seconds}.
    """
    return deferLater(reactor, seconds, lambda: None)


def tcpTransport(protocol: Protocol) -> tcp.Connection:
    """
    The real TCP transport of a connected C{protocol}.
    """
    transport = protocol.transport
    assert isinstance(transport, tcp.Connection), transport
    return transport


def setResetOnClose(transport: tcp.Connection) -> None:
    """
    Make closing C{transport}'s socket send a TCP reset: SO_LINGER on with a
    zero timeout.
    """
    handle: socket.socket = transport.getHandle()
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def pendingWrite(transport: object) -> int:
    """
    How many bytes a Twisted transport holds in user space, waiting to be
    written to its socket.
    """
    dataBuffer = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    tempLength = getattr(transport, "_tempDataLen", 0)
    return len(dataBuffer) - offset + tempLength


def randomBytes(size: int, seed: int) -> bytes:
    """
    C{size} reproducible pseudo-random bytes.
    """
    return random.Random(seed).randbytes(size)


def sha256(data: bytes | bytearray) -> str:
    """
    The hex SHA-256 digest of C{data}.
    """
    return hashlib.sha256(data).hexdigest()


# The two ends of a relayed conversation.


@implementer(IPushProducer)
class RandomSender:
    """
    Writes C{size} pseudo-random bytes to a transport in L{CHUNK}-sized
    writes, as a streaming producer: it stops writing when the transport
    pauses it and goes on when the transport resumes it, so the sender never
    holds more than the transport's buffer plus one chunk.

    @ivar sent: Bytes handed to the transport so far.
    @ivar paused: Whether the transport has paused it.
    @ivar pauses: How many times the transport paused it.
    """

    def __init__(self, peer: Peer, size: int, seed: int) -> None:
        self.peer = peer
        self.transport = tcpTransport(peer)
        self._random = random.Random(seed)
        self.size = size
        self.sent = 0
        self.digest = hashlib.sha256()
        self.paused = False
        self.pauses = 0
        self.stopped = False
        self.done: Notifier[None] = Notifier()

    def start(self) -> None:
        """
        Register with the transport and write until paused.
        """
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.stopped and self.sent < self.size:
            chunk = self._random.randbytes(min(CHUNK, self.size - self.sent))
            self.sent += len(chunk)
            self.digest.update(chunk)
            self.transport.write(chunk)
        if self.sent == self.size and not self.done.fired:
            self.transport.unregisterProducer()
            self.done.fire(None)
            self.peer.finishedSending()

    def stopProducing(self) -> None:
        self.stopped = True


@implementer(IHalfCloseableProtocol)
class Peer(Protocol):
    """
    One end of a relayed conversation: the application side of a client, or
    a target.  It hashes and counts the bytes it receives, and reports
    end-of-file and the end of the connection.

    When it has finished sending (see L{finishedSending}) it half-closes,
    and when it has both finished sending and seen end-of-file it closes:
    the polite way to end a TCP conversation, so that every test that does
    not reset on purpose ends with clean closes only.

    @ivar closeWhenDone: Whether to close by itself as just described; a
        test that drives the ending by hand turns it off.
    @ivar keep: Whether to keep every received byte in L{kept}.
    """

    closeWhenDone = True

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.kept = bytearray()
        self.count = 0
        self.digest = hashlib.sha256()
        self.sender: RandomSender | None = None
        self.made: Notifier[Peer] = Notifier()
        self.eof: Notifier[None] = Notifier()
        self.lost: Notifier[None] = Notifier()
        self.reason: Failure | None = None
        self._countWaiters: list[tuple[int, Notifier[None]]] = []

    # What a test uses.

    def send(self, size: int, seed: int) -> RandomSender:
        """
        Start sending C{size} pseudo-random bytes through a producer.
        """
        self.sender = RandomSender(self, size, seed)
        self.sender.start()
        return self.sender

    def finishedSending(self) -> None:
        """
        Nothing more to send: half-close, or close if the peer already did.
        """
        if not self.closeWhenDone or self.lost.fired:
            return
        if self.eof.fired:
            tcpTransport(self).loseConnection()
        else:
            tcpTransport(self).loseWriteConnection()

    def received(self, count: int) -> Deferred[None]:
        """
        Fires once at least C{count} application bytes arrived.
        """
        notifier: Notifier[None] = Notifier()
        if self.count >= count:
            notifier.fire(None)
        else:
            self._countWaiters.append((count, notifier))
        return notifier.wait()

    # Protocol events.

    def connectionMade(self) -> None:
        self.localAddress = tcpTransport(self).getHost()
        self.made.fire(self)

    def dataReceived(self, data: bytes) -> None:
        self.applicationData(data)

    def applicationData(self, data: bytes) -> None:
        """
        Count, hash and perhaps keep C{data}.
        """
        self.count += len(data)
        self.digest.update(data)
        if self.keep:
            self.kept += data
        ready = [n for (c, n) in self._countWaiters if self.count >= c]
        self._countWaiters = [(c, n) for (c, n) in self._countWaiters if n not in ready]
        for notifier in ready:
            notifier.fire(None)

    def readConnectionLost(self) -> None:
        self.eof.fire(None)
        if self.closeWhenDone and (self.sender is None or self.sender.done.fired):
            tcpTransport(self).loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.fire(None)


class SOCKSClient(Peer):
    """
    A client that writes a handshake (and whatever else the test wants
    pipelined with it) as one write as soon as it connects, reads
    C{replyLength} bytes of replies, and treats everything after them as
    relayed data.

    @ivar replies: The reply bytes, once C{replyLength} of them arrived.
    @ivar handshakeBytes: Every byte received before the replies were
        complete (all of them, if the connection ended earlier).
    """

    def __init__(
        self, handshake: bytes, replyLength: int, *, keep: bool = False
    ) -> None:
        super().__init__(keep=keep)
        self.handshake = handshake
        self.replyLength = replyLength
        self.handshakeBytes = b""
        self.replies: Notifier[bytes] = Notifier()

    def connectionMade(self) -> None:
        super().connectionMade()
        tcpTransport(self).write(self.handshake)

    def dataReceived(self, data: bytes) -> None:
        if self.replies.fired:
            self.applicationData(data)
            return
        self.handshakeBytes += data
        if len(self.handshakeBytes) >= self.replyLength:
            replies = self.handshakeBytes[: self.replyLength]
            rest = self.handshakeBytes[self.replyLength :]
            self.handshakeBytes = replies
            self.replies.fire(replies)
            if rest:
                self.applicationData(rest)


class TargetListener(Factory):
    """
    A target server on loopback whose connections are L{Peer}s made by
    C{build}.
    """

    def __init__(self, build: Callable[[], Peer]) -> None:
        self.build = build
        self.peers: list[Peer] = []
        self._first: Notifier[Peer] = Notifier()

    def buildProtocol(self, addr: IAddress | None) -> Peer:
        peer = self.build()
        self.peers.append(peer)
        peer.made.wait().addCallback(self._first.fire)
        return peer

    def firstConnection(self) -> Deferred[Peer]:
        """
        The first target connection, once made.
        """
        return within(self._first.wait(), "the target to accept the connection")


class CountingServerFactory(SOCKSServerFactory):
    """
    Our server factory, counting the sessions it accepts so a test can wait
    for all of them to end.
    """

    accepted = 0

    def buildProtocol(self, addr: IAddress | None) -> SOCKSServerProtocol | None:
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.accepted += 1
        return protocol


# The tests' common ground.


class RelayTestCase(TestCase):
    """
    Starts servers, targets and clients on loopback, and makes sure each
    test ends with all of them closed.

    Every test runs on both of the relay's paths: these classes splice
    (where the platform can; under C{CI=true} on Linux it must), and a
    C{...CopyingTests} subclass of each copies.  Every relayed session's
    log event must name the path the class asked for.

    @ivar splice: Whether the server may splice.
    @ivar fallsBack: Whether the test makes splicing fail, so that the
        sessions copy even though the server may splice.
    """

    timeout = 120
    splice = True
    fallsBack = False

    @property
    def expectedPath(self) -> str:
        """
        The path every relayed session of this test must take.
        """
        return SPLICE if self.splice and not self.fallsBack else COPY

    def setUp(self) -> None:
        if self.splice and not _splice.AVAILABLE:
            if os.environ.get("CI") == "true" and sys.platform == "linux":
                self.fail("splice(2) is missing on Linux under CI")
            raise SkipTest("this platform has no splice(2)")
        self.sessionEvents: list[LogEvent] = []
        observer = cast(ILogObserver, self._observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def _observe(self, event: LogEvent) -> None:
        if (
            event.get("log_namespace") == SOCKSServerProtocol.__module__
            and "bytesFromClient" in event
        ):
            self.sessionEvents.append(event)

    async def startServer(self) -> tuple[CountingServerFactory, int]:
        """
        Our SOCKS server listening on an ephemeral loopback port; at the end
        of the test, wait for every session it accepted to end.
        """
        factory = CountingServerFactory(reactor, connectTimeout=10, splice=self.splice)
        port = await self.listen(factory)
        self.addCleanup(self._sessionsEnded, factory)
        return factory, port

    async def _sessionsEnded(self, factory: CountingServerFactory) -> None:
        for _ in range(1000):
            if len(self.sessionEvents) >= factory.accepted and not factory.sessions:
                paths = {e["relay"] for e in self.sessionEvents if e["relay"]}
                self.assertLessEqual(paths, {self.expectedPath})
                self.assertEqual(_splice.pipes.inUse, 0, "a pipe outlived its session")
                return
            await sleep(0.01)
        self.fail(
            f"{factory.accepted} sessions accepted, {len(self.sessionEvents)} "
            f"ended after 10 s; still open: {factory.sessions!r}"
        )

    async def startTarget(
        self, build: Callable[[], Peer] = Peer
    ) -> tuple[TargetListener, int]:
        """
        A target server on an ephemeral loopback port.
        """
        listener = TargetListener(build)
        port = await self.listen(listener)
        self.addCleanup(self._closeAll, listener.peers)
        return listener, port

    async def listen(self, factory: Factory) -> int:
        """
        Listen on an ephemeral loopback port until the test ends.
        """
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening: IListeningPort = await endpoint.listen(factory)
        self.addCleanup(listening.stopListening)
        return cast(int, listening.getHost().port)  # type: ignore[attr-defined]

    async def refusedPort(self) -> int:
        """
        A loopback port where nothing listens (one that just stopped).
        """
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening: IListeningPort = await endpoint.listen(Factory.forProtocol(Protocol))
        port = cast(int, listening.getHost().port)  # type: ignore[attr-defined]
        stopping = listening.stopListening()
        if stopping is not None:
            await stopping
        return port

    async def connectClient(self, port: int, client: SOCKSClient) -> SOCKSClient:
        """
        Connect C{client} to our server; at the end of the test, make sure
        it is closed.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await within(connectProtocol(endpoint, client), "connecting to the proxy")
        self.addCleanup(self._closeAll, [client])
        return client

    async def _closeAll(self, peers: list[Peer]) -> None:
        for peer in peers:
            if not peer.lost.fired and peer.transport is not None:
                tcpTransport(peer).abortConnection()
        for peer in peers:
            await within(peer.lost.wait(), "a connection to close at cleanup")

    async def establish(
        self, build: Callable[[], Peer] = Peer
    ) -> tuple[CountingServerFactory, SOCKSClient, Peer, int]:
        """
        A SOCKS5 session through our server to a fresh target, established:
        the client has its success reply and the target its connection.

        The reply's BND.ADDR and BND.PORT must be the address the server
        connected to the target from (RFC 1928 section 6).
        """
        factory, proxyPort = await self.startServer()
        listener, targetPort = await self.startTarget(build)
        client = await self.connectClient(
            proxyPort,
            SOCKSClient(
                SOCKS5_GREETING + socks5ConnectIPv4(targetPort),
                SOCKS5_HANDSHAKE_REPLY_LENGTH,
            ),
        )
        replies = await within(client.replies.wait(), "the SOCKS5 replies")
        target = await listener.firstConnection()
        self.assertEqual(replies[:2], SOCKS5_NO_AUTH_CHOSEN)
        # VER 5, REP X'00' succeeded, RSV 0, ATYP 1 (IPv4).
        self.assertEqual(replies[2:6], bytes.fromhex("05 00 00 01"))
        serverSide = tcpTransport(target).getPeer()
        self.assertEqual(
            (socket.inet_ntoa(replies[6:10]), struct.unpack("!H", replies[10:12])[0]),
            (serverSide.host, serverSide.port),
        )
        return factory, client, target, targetPort

    def assertClean(self, peer: Peer, who: str) -> None:
        """
        C{peer}'s connection ended cleanly.
        """
        reason = peer.reason
        assert reason is not None, f"{who}'s connection has not ended"
        self.assertTrue(
            reason.check(ConnectionDone),
            f"{who}'s connection did not end cleanly: {reason.value!r}",
        )

    def assertReset(self, peer: Peer, who: str) -> None:
        """
        C{peer}'s connection was lost (a reset), not ended cleanly.
        """
        reason = peer.reason
        assert reason is not None, f"{who}'s connection has not ended"
        self.assertFalse(
            reason.check(ConnectionDone),
            f"{who} saw a clean end where a reset was expected",
        )
        self.assertTrue(
            reason.check(ConnectionLost),
            f"{who} saw {reason.value!r} where a reset was expected",
        )


def _targetKeeping() -> Peer:
    return Peer(keep=True)


def _targetDrivenByHand() -> Peer:
    peer = Peer(keep=True)
    peer.closeWhenDone = False
    return peer


# The tests.


class FullDuplexTests(RelayTestCase):
    """
    Bulk data both ways at once arrives intact.
    """

    SIZE = 64 * MiB

    async def test_64MiBEachWayAtOnce(self) -> None:
        """
        The client and the target each send 64 MiB of pseudo-random data at
        the same time, through producers; each receives exactly what the
        other sent (same byte count, same SHA-256), and the session ends
        with clean closes on both sides.
        """
        _, client, target, _ = await self.establish()
        up = client.send(self.SIZE, seed=1)
        down = target.send(self.SIZE, seed=2)
        await within(
            gatherResults([client.lost.wait(), target.lost.wait()]),
            "both connections to end after 64 MiB each way",
            seconds=100,
        )
        self.assertEqual(up.sent, self.SIZE)
        self.assertEqual(down.sent, self.SIZE)
        self.assertEqual(target.count, self.SIZE)
        self.assertEqual(client.count, self.SIZE)
        self.assertEqual(target.digest.hexdigest(), up.digest.hexdigest())
        self.assertEqual(client.digest.hexdigest(), down.digest.hexdigest())
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")


class HalfCloseTests(RelayTestCase):
    """
    End-of-file in one direction reaches the other end as end-of-file while
    the other direction keeps flowing.
    """

    async def test_clientHalfClosesFirst(self) -> None:
        """
        The client sends 1 MiB and half-closes; the target receives all of
        it and then end-of-file, with its connection still open; its 3 MiB
        reply then reaches the client in full, and when the target closes,
        the client sees the end.
        """
        _, client, target, _ = await self.establish(build=_targetDrivenByHand)
        request = randomBytes(1 * MiB, seed=3)
        tcpTransport(client).write(request)
        tcpTransport(client).loseWriteConnection()

        await within(target.eof.wait(), "end-of-file at the target")
        self.assertEqual(target.count, len(request))
        self.assertEqual(sha256(target.kept), sha256(request))
        self.assertFalse(target.lost.fired, "the target's connection ended")
        self.assertFalse(client.lost.fired, "the client's connection ended")
        self.assertFalse(client.eof.fired, "the client saw end-of-file early")

        reply = target.send(3 * MiB, seed=4)
        await within(reply.done.wait(), "the target to write its reply")
        await within(client.received(3 * MiB), "the reply at the client")
        self.assertFalse(client.eof.fired, "the client saw end-of-file early")
        tcpTransport(target).loseConnection()

        await within(client.eof.wait(), "end-of-file at the client")
        await within(client.lost.wait(), "the client's connection to end")
        await within(target.lost.wait(), "the target's connection to end")
        self.assertEqual(client.count, 3 * MiB)
        self.assertEqual(client.digest.hexdigest(), reply.digest.hexdigest())
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")

    async def test_targetHalfClosesFirst(self) -> None:
        """
        The mirror: the target sends 1 MiB and half-closes; the client
        receives all of it and then end-of-file, with its connection still
        open; its 3 MiB reply reaches the target in full, and when the
        client closes, the target sees the end.
        """
        _, client, target, _ = await self.establish(build=_targetDrivenByHand)
        client.closeWhenDone = False
        greeting = randomBytes(1 * MiB, seed=5)
        tcpTransport(target).write(greeting)
        tcpTransport(target).loseWriteConnection()

        await within(client.eof.wait(), "end-of-file at the client")
        self.assertEqual(client.count, len(greeting))
        self.assertEqual(client.digest.hexdigest(), sha256(greeting))
        self.assertFalse(client.lost.fired, "the client's connection ended")
        self.assertFalse(target.lost.fired, "the target's connection ended")
        self.assertFalse(target.eof.fired, "the target saw end-of-file early")

        reply = client.send(3 * MiB, seed=6)
        await within(reply.done.wait(), "the client to write its reply")
        await within(target.received(3 * MiB), "the reply at the target")
        self.assertFalse(target.eof.fired, "the target saw end-of-file early")
        tcpTransport(client).loseConnection()

        await within(target.eof.wait(), "end-of-file at the target")
        tcpTransport(target).loseConnection()
        await within(target.lost.wait(), "the target's connection to end")
        await within(client.lost.wait(), "the client's connection to end")
        self.assertEqual(target.count, 3 * MiB)
        self.assertEqual(sha256(target.kept), reply.digest.hexdigest())
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")


class ResetTests(RelayTestCase):
    """
    A reset on one side reaches the other side as a reset, not as a clean
    end of stream (which the other end could take for a complete response).
    """

    async def _established(self) -> tuple[SOCKSClient, Peer]:
        """
        A session where one byte went each way, so the relay is running.
        """
        _, client, target, _ = await self.establish(build=_targetDrivenByHand)
        client.closeWhenDone = False
        tcpTransport(client).write(b"?")
        await within(target.received(1), "a byte at the target")
        tcpTransport(target).write(b"!")
        await within(client.received(1), "a byte at the client")
        return client, target

    async def _resetSeen(self, peer: Peer, who: str) -> None:
        """
        Wait for C{peer}'s connection to end or for it to see end-of-file
        (which a relay that turned the reset into a clean close would
        cause), then check that it was a reset.
        """
        await within(
            race([peer.lost.wait(), peer.eof.wait()]),
            f"{who}'s connection to end",
        )
        self.assertFalse(peer.eof.fired, f"{who} saw end-of-file, not a reset")
        self.assertReset(peer, who)

    async def test_clientResets(self) -> None:
        """
        The client aborts with a reset: the target's connection is lost with
        a reset, without end-of-file first.
        """
        client, target = await self._established()
        setResetOnClose(tcpTransport(client))
        tcpTransport(client).abortConnection()
        await self._resetSeen(target, "the target")

    async def test_targetResets(self) -> None:
        """
        The mirror: the target aborts with a reset, and the client's
        connection is lost with a reset, without end-of-file first.
        """
        client, target = await self._established()
        setResetOnClose(tcpTransport(target))
        tcpTransport(target).abortConnection()
        await self._resetSeen(client, "the client")

    async def test_clientResetsMidStream(self) -> None:
        """
        The target is streaming 64 MiB when the client, after reading 1 MiB,
        resets: the target's connection is lost with a reset before it has
        sent everything.
        """
        client, target = await self._established()
        sender = target.send(64 * MiB, seed=12)
        await within(client.received(1 * MiB), "1 MiB at the client")
        setResetOnClose(tcpTransport(client))
        tcpTransport(client).abortConnection()
        await self._resetSeen(target, "the target")
        self.assertLess(sender.sent, 64 * MiB)

    async def test_targetResetsMidStream(self) -> None:
        """
        The mirror: the client is streaming 64 MiB when the target, after
        reading 1 MiB, resets: the client's connection is lost with a reset
        before it has sent everything.
        """
        client, target = await self._established()
        sender = client.send(64 * MiB, seed=13)
        await within(target.received(1 * MiB), "1 MiB at the target")
        setResetOnClose(tcpTransport(target))
        tcpTransport(target).abortConnection()
        await self._resetSeen(client, "the client")
        self.assertLess(sender.sent, 64 * MiB)


class PipelinedTests(RelayTestCase):
    """
    Bytes a client writes together with its handshake, without waiting for
    replies, reach the target exactly once and in order, or nowhere.
    """

    async def _pipelined(
        self, request: Callable[[int], bytes], replyLength: int
    ) -> tuple[SOCKSClient, Peer, bytes]:
        """
        Connect with C{request(targetPort)} and 200 KiB of data in one
        write, half-close, and wait for both connections to end.
        """
        _, proxyPort = await self.startServer()
        listener, targetPort = await self.startTarget(_targetKeeping)
        # More than one read's worth (Twisted reads 64 KiB at a time), so
        # part of the data arrives with the request and part after it.
        data = randomBytes(200 * KiB, seed=7)
        client = SOCKSClient(request(targetPort) + data, replyLength)
        await self.connectClient(proxyPort, client)
        tcpTransport(client).loseWriteConnection()
        target = await listener.firstConnection()
        await within(target.lost.wait(), "the target's connection to end")
        await within(client.lost.wait(), "the client's connection to end")
        self.assertEqual(target.count, len(data))
        self.assertEqual(sha256(target.kept), sha256(data))
        self.assertEqual(client.count, 0)
        self.assertEqual(len(listener.peers), 1)
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")
        return client, target, data

    async def test_socks5(self) -> None:
        """
        SOCKS5: greeting, CONNECT request and data in one write; the client
        gets the method selection and a success reply, and the target gets
        exactly the data.
        """
        client, _, _ = await self._pipelined(
            lambda port: SOCKS5_GREETING + socks5ConnectIPv4(port),
            SOCKS5_HANDSHAKE_REPLY_LENGTH,
        )
        self.assertEqual(client.replies.value[:6], bytes.fromhex("05 00  05 00 00 01"))

    async def test_socks4a(self) -> None:
        """
        SOCKS4a: a CONNECT to "localhost" and data in one write; the client
        gets a granted reply (VN 0, CD 90), and the target gets exactly the
        data.
        """
        client, _, _ = await self._pipelined(
            socks4aConnectLocalhost, SOCKS4_REPLY_LENGTH
        )
        self.assertEqual(client.replies.value[:2], bytes.fromhex("00 5a"))

    async def _failedConnect(self, dataSize: int) -> SOCKSClient:
        """
        Pipeline C{dataSize} bytes after a CONNECT to a closed port, and
        return the client once its connection ended.
        """
        _, proxyPort = await self.startServer()
        closedPort = await self.refusedPort()
        data = randomBytes(dataSize, seed=8)
        client = SOCKSClient(
            SOCKS5_GREETING + socks5ConnectIPv4(closedPort) + data,
            SOCKS5_HANDSHAKE_REPLY_LENGTH,
        )
        await self.connectClient(proxyPort, client)
        await within(client.lost.wait(), "the client's connection to end")
        # Method selection X'00', then VER 5, REP X'05' (connection
        # refused), RSV 0, and an IPv4 BND.ADDR/BND.PORT: nothing more.
        self.assertEqual(client.handshakeBytes[:6], bytes.fromhex("05 00  05 05 00 01"))
        self.assertTrue(client.replies.fired, client.handshakeBytes.hex())
        self.assertEqual(client.count, 0)
        return client

    async def test_connectFailsSmallData(self) -> None:
        """
        Data pipelined after a CONNECT to a port where nothing listens: the
        client gets method selection, then the failure reply X'05'
        (connection refused), then a clean close; nothing else arrives.
        """
        client = await self._failedConnect(1000)
        self.assertClean(client, "the client")

    async def test_connectFailsLargeData(self) -> None:
        """
        As above with 1 MiB pipelined, more than the server reads before it
        stops reading to dial: the client still gets the failure reply in
        full and nothing else, and its connection ends (a reset is allowed
        here: closing a socket with unread input makes the kernel send one).
        """
        await self._failedConnect(1 * MiB)


class StoppedReaderTests(RelayTestCase):
    """
    An end that stops reading makes the relay stop reading the other side,
    and so, through TCP flow control, makes the other end's producer pause;
    nothing buffers without bound in between.
    """

    SIZE = 64 * MiB

    #: A bound on the bytes the writer can write before it is paused for
    #: good.  They sit in: the stopped reader's socket receive buffer, the
    #: server's send buffer towards it, the relay's write buffer (see
    #: L{SERVER_BUFFER_BOUND}), the server's receive buffer from the
    #: writer, the writer's send buffer, and the writer's transport buffer
    #: (64 KiB plus one chunk).  Linux lets each send buffer grow to
    #: tcp_wmem[2] (4 MiB by default) and each receive buffer to
    #: tcp_rmem[2] (6 MiB by default; 32 MiB on the machine where this was
    #: written), but a receive buffer only grows as fast as its application
    #: reads, and both readers here stop almost at once: about 6 MiB were
    #: held when this was written.  32 MiB is far above that and far below
    #: the 64 MiB sent, so a relay that kept reading (buffering in user
    #: space) fails the test.
    BOUND = 32 * MiB

    #: What the server may hold in user space for one direction of one
    #: session: its transport's bufferSize (the relay's read size), plus the
    #: one read of at most that size that took it over and paused the other
    #: side, with room to spare.
    SERVER_BUFFER_BOUND = 3 * COPY_READ_SIZE

    async def _settled(self, sender: RandomSender) -> int:
        """
        Wait until C{sender} is paused and has written nothing for half a
        second; return how much it wrote.
        """
        last, stableSince = -1, 0.0
        for _ in range(1000):
            await sleep(0.02)
            if not sender.paused or sender.sent != last:
                last, stableSince = sender.sent, reactor.seconds()
            elif reactor.seconds() - stableSince >= 0.5:
                return sender.sent
            self.assertLess(sender.sent, self.SIZE, "the writer was never paused")
        self.fail("the writer's producer never settled in the paused state")

    async def _stoppedReader(self, clientStops: bool) -> None:
        """
        One end stops reading and the other writes L{SIZE} bytes through a
        push producer.  The writer gets paused and stays paused with less
        than L{BOUND} written, the server's user-space buffer towards the
        stopped reader stays within L{SERVER_BUFFER_BOUND}, and once the
        reader reads again every byte arrives intact.
        """
        factory, client, target, _ = await self.establish()
        reader, writer = (client, target) if clientStops else (target, client)
        tcpTransport(reader).pauseProducing()
        sender = writer.send(self.SIZE, seed=9)

        written = await self._settled(sender)
        self.assertGreater(sender.pauses, 0)
        self.assertLess(written, self.BOUND)
        [session] = factory.sessions
        # The server-side transport that writes to the stopped reader.
        towardsReader = (
            session.transport if clientStops else session._target.transport  # type: ignore[union-attr]
        )
        self.assertLessEqual(pendingWrite(towardsReader), self.SERVER_BUFFER_BOUND)

        # Still paused a second later, with nothing more written or held.
        await sleep(1.0)
        self.assertTrue(sender.paused)
        self.assertEqual(sender.sent, written)
        self.assertLessEqual(pendingWrite(towardsReader), self.SERVER_BUFFER_BOUND)
        self.assertEqual(reader.count, 0)

        tcpTransport(reader).resumeProducing()
        await within(
            gatherResults([client.lost.wait(), target.lost.wait()]),
            "both connections to end after the reader read again",
            seconds=60,
        )
        self.assertEqual(sender.sent, self.SIZE)
        self.assertEqual(reader.count, self.SIZE)
        self.assertEqual(reader.digest.hexdigest(), sender.digest.hexdigest())
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")

    async def test_clientStopsReading(self) -> None:
        """
        The client stops reading (its transport paused) while the target
        writes 64 MiB: the target's producer is paused with a bounded
        amount written, the server's buffer towards the client stays small,
        and when the client reads again all 64 MiB arrive intact.
        """
        await self._stoppedReader(clientStops=True)

    async def test_targetStopsReading(self) -> None:
        """
        The mirror: the target stops reading while the client writes 64 MiB,
        with the same bounds and the same intact delivery afterwards.
        """
        await self._stoppedReader(clientStops=False)


class SessionLogTests(RelayTestCase):
    """
    Each session logs one event when it ends, with what it carried.
    """

    async def test_relayedSession(self) -> None:
        """
        After a session that carried 123457 bytes up and 654321 down, the
        server logs exactly one event for it, with those counts, reply 0,
        version 5, command CONNECT, the target, and the client's address.
        """
        _, client, target, targetPort = await self.establish()
        client.send(123457, seed=10)
        target.send(654321, seed=11)
        await within(
            gatherResults([client.lost.wait(), target.lost.wait()]),
            "both connections to end",
        )
        events = await self._eventsFor(client)
        self.assertEqual(len(events), 1, events)
        [event] = events
        self.assertEqual(event["bytesFromClient"], 123457)
        self.assertEqual(event["bytesToClient"], 654321)
        self.assertEqual(event["reply"], 0)
        self.assertEqual(event["version"], "5")
        self.assertEqual(event["command"], "CONNECT")
        self.assertEqual(event["target"], f"127.0.0.1:{targetPort}")

    async def test_refusedSession(self) -> None:
        """
        A session whose CONNECT was refused logs one event with reply 5
        (connection refused), the target, and no bytes either way.
        """
        _, proxyPort = await self.startServer()
        closedPort = await self.refusedPort()
        client = await self.connectClient(
            proxyPort,
            SOCKSClient(
                SOCKS5_GREETING + socks5ConnectIPv4(closedPort) + b"dropped",
                SOCKS5_HANDSHAKE_REPLY_LENGTH,
            ),
        )
        await within(client.lost.wait(), "the client's connection to end")
        events = await self._eventsFor(client)
        self.assertEqual(len(events), 1, events)
        [event] = events
        self.assertEqual(event["reply"], 5)
        self.assertEqual(event["target"], f"127.0.0.1:{closedPort}")
        self.assertEqual(event["bytesToClient"], 0)

    async def _eventsFor(self, client: Peer) -> list[LogEvent]:
        """
        The session-end events for C{client}'s session, after giving the
        server a moment to log a duplicate, if it would.
        """
        address = client.localAddress
        name = f"{address.host}:{address.port}"
        for _ in range(500):
            if any(e["client"] == name for e in self.sessionEvents):
                break
            await sleep(0.01)
        await sleep(0.1)
        return [e for e in self.sessionEvents if e["client"] == name]


class SplicePipeTests(RelayTestCase):
    """
    The splicing path holds a pipe only while bytes are in flight, and
    hands a session back to copying when the kernel will not splice.
    """

    async def test_idleSessionHoldsNoPipe(self) -> None:
        """
        An established session that has relayed some bytes each way and is
        now idle holds no pipe; neither does anything else, once every
        session has ended (checked by every test's cleanup).
        """
        factory, client, target, _ = await self.establish(_targetDrivenByHand)
        client.closeWhenDone = False  # both ends stay open: the session idles
        client.send(300 * KiB, seed=20)
        target.send(300 * KiB, seed=21)
        await within(
            gatherResults([client.received(300 * KiB), target.received(300 * KiB)]),
            "both ends to receive 300 KiB",
        )
        [session] = factory.sessions
        relay = session._relay
        assert relay is not None
        self.assertEqual(relay.path, self.expectedPath)
        self.assertEqual(relay.holdsPipes, 0)
        self.assertEqual(_splice.pipes.inUse, 0)
        tcpTransport(client).loseConnection()
        tcpTransport(target).loseConnection()
        await within(
            gatherResults([client.lost.wait(), target.lost.wait()]),
            "both connections to end",
        )

    async def _refusedThenCopied(self) -> None:
        """
        Splicing is refused at the first attempt: the session is copied
        instead, every byte arrives intact, and its log event says so.
        """
        factory, client, target, _ = await self.establish()
        up = client.send(4 * MiB, seed=22)
        down = target.send(4 * MiB, seed=23)
        await within(
            gatherResults([client.lost.wait(), target.lost.wait()]),
            "both connections to end after 4 MiB each way",
        )
        self.assertEqual(target.digest.hexdigest(), up.digest.hexdigest())
        self.assertEqual(client.digest.hexdigest(), down.digest.hexdigest())
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")
        await self._sessionsEnded(factory)
        [event] = self.sessionEvents
        self.assertEqual(event["relay"], COPY)

    async def test_kernelRefusesSplice(self) -> None:
        """
        splice(2) answering EINVAL (a socket it does not support) makes the
        session fall back to copying, with nothing lost.
        """
        if not _splice.AVAILABLE:
            raise SkipTest("this platform has no splice(2)")

        def refuse(*args: object, **kwargs: object) -> int:
            raise OSError(errno.EINVAL, "refused for the test")

        self.patch(os, "splice", refuse)
        self.fallsBack = True
        await self._refusedThenCopied()

    async def test_noPipeLeft(self) -> None:
        """
        No pipe can be made (the process is out of descriptors): the
        session falls back to copying, with nothing lost.
        """
        if not _splice.AVAILABLE:
            raise SkipTest("this platform has no splice(2)")

        def exhausted(flags: int) -> tuple[int, int]:
            raise OSError(errno.EMFILE, "too many open files")

        self.patch(_splice.pipes, "_idle", [])
        self.patch(os, "pipe2", exhausted)
        self.fallsBack = True
        await self._refusedThenCopied()


class BandwidthCapTests(RelayTestCase):
    """
    A bandwidth cap holds on the relay's path: the relay reads no faster
    than the cap allows (it pauses and resumes the reading side).
    """

    RATE = 256 * KiB

    async def test_capHoldsEachWay(self) -> None:
        """
        With a cap of 256 KiB/s a session, 1 MiB each way takes at least
        2 s: the bucket starts with one second's worth, a direction may run
        ahead by one read (64 KiB), and the rest waits for the rate.  Every
        byte arrives intact.
        """
        factory = CountingServerFactory(
            reactor,
            connectTimeout=10,
            splice=self.splice,
            bandwidthPerSession=self.RATE,
        )
        proxyPort = await self.listen(factory)
        self.addCleanup(self._sessionsEnded, factory)
        listener, targetPort = await self.startTarget()
        client = await self.connectClient(
            proxyPort,
            SOCKSClient(
                SOCKS5_GREETING + socks5ConnectIPv4(targetPort),
                SOCKS5_HANDSHAKE_REPLY_LENGTH,
            ),
        )
        await within(client.replies.wait(), "the SOCKS5 replies")
        target = await listener.firstConnection()
        started = reactor.seconds()
        up = client.send(MiB, seed=24)
        down = target.send(MiB, seed=25)
        await within(
            gatherResults([client.lost.wait(), target.lost.wait()]),
            "both connections to end after 1 MiB each way",
        )
        self.assertGreaterEqual(reactor.seconds() - started, 2.0)
        self.assertEqual(target.digest.hexdigest(), up.digest.hexdigest())
        self.assertEqual(client.digest.hexdigest(), down.digest.hexdigest())
        self.assertClean(client, "the client")
        self.assertClean(target, "the target")


# The same tests on the copying path.


class FullDuplexCopyingTests(FullDuplexTests):
    __doc__ = FullDuplexTests.__doc__
    splice = False


class HalfCloseCopyingTests(HalfCloseTests):
    __doc__ = HalfCloseTests.__doc__
    splice = False


class ResetCopyingTests(ResetTests):
    __doc__ = ResetTests.__doc__
    splice = False


class PipelinedCopyingTests(PipelinedTests):
    __doc__ = PipelinedTests.__doc__
    splice = False


class StoppedReaderCopyingTests(StoppedReaderTests):
    __doc__ = StoppedReaderTests.__doc__
    splice = False


class SessionLogCopyingTests(SessionLogTests):
    __doc__ = SessionLogTests.__doc__
    splice = False


class BandwidthCapCopyingTests(BandwidthCapTests):
    __doc__ = BandwidthCapTests.__doc__
    splice = False
