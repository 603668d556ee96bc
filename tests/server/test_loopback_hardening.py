"""
The server's hardening on real loopback sockets: clients that leave before
their reply, requests for the server's own address, other protocols on the
SOCKS port, and escaped log lines.

The server is our L{SOCKSServerFactory} listening inside trial's reactor;
the clients, and the targets that must misbehave at the TCP level, are plain
non-blocking sockets that a test polls while the reactor runs (so the server
keeps serving).  Wire bytes are written by hand from RFC 1928, RFC 1929 and
the SOCKS4/4a texts.

A target that never answers is a listening socket with a backlog of 0 whose
one queue slot is taken: Linux then drops the SYNs that reach it, so a dial
to it hangs until it is cancelled.  Whether the server's dials really hang
(and later really stop) is read from the kernel's table of TCP sockets.

Every test waits, before it ends, for every session the server accepted to
end and be logged, so trial's reactor is clean afterwards.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer
from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorUDP,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from socks_twisted.auth import portalFor
from socks_twisted.server import SOCKSServerProtocol
from socks_twisted.server._outbound import ConnectReactor, endpointFor
from socks_twisted.server._session import DEPARTURE_GRACE
from socks_twisted.server._udp import UDPAssociation

from ..test_relay import CountingServerFactory

reactor = cast(ConnectReactor, _globalReactor)

#: How long any single step may take before it counts as hung.
STEP_TIMEOUT = 10.0

#: How long departed clients may keep their slots: the grace, plus a margin
#: for a loaded machine.  Well under the connect timeout the tests set (30 s).
RELEASE_BOUND = DEPARTURE_GRACE + 5.0

#: How long the tests watch a dial to be sure that it hangs.
HANG_CHECK = 1.0

# The handshake bytes, written by hand.

#: VER 5, NMETHODS 1, METHODS [X'00' NO AUTHENTICATION REQUIRED].
GREETING = bytes.fromhex("05 01 00")
#: The server's choice: VER 5, METHOD X'00'.
NO_AUTH_CHOSEN = bytes.fromhex("05 00")
#: VER 5, NMETHODS 1, METHODS [X'02' USERNAME/PASSWORD].
GREETING_PASSWORD = bytes.fromhex("05 01 02")
#: The server's choice: VER 5, METHOD X'02'.
PASSWORD_CHOSEN = bytes.fromhex("05 02")
#: RFC 1929: VER 1, STATUS 0 (success).
PASSWORD_ACCEPTED = bytes.fromhex("01 00")
#: A SOCKS5 reply with an IPv4 BND.ADDR: VER, REP, RSV, ATYP, 4 + 2 bytes.
REPLY_LENGTH = 10
#: The SOCKS4 reply: VN 0, CD, DSTPORT, DSTIP.
SOCKS4_REPLY_LENGTH = 8
#: SOCKS4 CD 91: request rejected or failed.
SOCKS4_REJECTED = bytes.fromhex("00 5b 0000 00000000")


def socks5Request(command: int, host: str, port: int) -> bytes:
    """
    RFC 1928 section 4: VER 5, CMD, RSV 0, then DST.ADDR as ATYP 1 (an IPv4
    literal) or ATYP 3 (a name), then DST.PORT in network order.
    """
    try:
        address = bytes([1]) + ipaddress.IPv4Address(host).packed
    except ValueError:
        name = host.encode("latin-1")
        address = bytes([3, len(name)]) + name
    return bytes([5, command, 0]) + address + struct.pack("!H", port)


def connect5(host: str, port: int) -> bytes:
    """
    A SOCKS5 CONNECT (CMD 1) request.
    """
    return socks5Request(1, host, port)


def bind5(host: str, port: int) -> bytes:
    """
    A SOCKS5 BIND (CMD 2) request.
    """
    return socks5Request(2, host, port)


def failure5(code: int) -> bytes:
    """
    A SOCKS5 failure reply as the server sends it: REP C{code}, an all-zero
    IPv4 BND.ADDR and BND.PORT.
    """
    return bytes([5, code]) + bytes.fromhex("00 01 00000000 0000")


def parseReply5(reply: bytes) -> tuple[int, str, int]:
    """
    The REP, BND.ADDR and BND.PORT of a SOCKS5 reply with an IPv4 address.
    """
    assert len(reply) == REPLY_LENGTH and reply[:1] == b"\x05", reply
    assert reply[3] == 1, f"not an IPv4 BND.ADDR: {reply!r}"
    host = str(ipaddress.IPv4Address(reply[4:8]))
    (port,) = struct.unpack("!H", reply[8:10])
    return reply[1], host, port


def udpHeader(host: str, port: int) -> bytes:
    """
    RFC 1928 section 7: RSV 0000, FRAG 0, ATYP 1, DST.ADDR, DST.PORT.
    """
    return (
        bytes.fromhex("0000 00 01")
        + ipaddress.IPv4Address(host).packed
        + struct.pack("!H", port)
    )


# Small tools.


def sleep(seconds: float) -> defer.Deferred[None]:
    """
    Let the reactor run for C{seconds}.
    """
    return deferLater(reactor, seconds, lambda: None)


async def until(condition: Callable[[], bool], what: str, seconds: float) -> None:
    """
    Poll C{condition} while the reactor runs, failing with a message naming
    C{what} if it is not true within C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        await sleep(0.01)


def tcpSockets(state: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """
    The IPv4 TCP sockets of this network namespace in C{state} (the
    kernel's hex code: C{"02"} SYN_SENT, C{"0A"} LISTEN), as pairs of
    C{(ip, port)}, local then remote, from C{/proc/net/tcp}.
    """

    def parse(field: str) -> tuple[int, int]:
        ip, port = field.split(":")
        return int(ip, 16), int(port, 16)

    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return [(parse(row[1]), parse(row[2])) for row in rows if row[3] == state]


#: 127.0.0.1 as /proc/net/tcp writes it (the kernel's byte order).
LOOPBACK_IN_TABLE = 0x0100007F


def dialsTo(port: int) -> int:
    """
    How many sockets are dialling 127.0.0.1:C{port} now, their SYN not
    answered yet (SYN_SENT).
    """
    return sum(
        1 for _, remote in tcpSockets("02") if remote == (LOOPBACK_IN_TABLE, port)
    )


def isListening(port: int) -> bool:
    """
    Whether a TCP socket listens on 127.0.0.1:C{port} now.
    """
    return any(local == (LOOPBACK_IN_TABLE, port) for local, _ in tcpSockets("0A"))


def requireLinux() -> None:
    """
    Skip unless on Linux: the tests that need a target that never answers
    rely on its backlog and read its TCP table.
    """
    if not sys.platform.startswith("linux"):
        raise SkipTest("needs Linux: a full backlog that drops SYNs, /proc/net/tcp")


class RawSocket:
    """
    A plain non-blocking TCP socket, read and written by polling so that
    the reactor, and the server in it, keeps running meanwhile.

    @ivar received: What arrived and was not taken yet.
    @ivar eof: Whether end-of-file arrived.
    @ivar name: The socket's own address as the session log writes a
        client's (C{host:port}).
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.received = bytearray()
        self.eof = False
        host, port = sock.getsockname()[:2]
        self.name = f"{host}:{port}"

    def _pump(self) -> None:
        for _ in range(64):
            if self.eof:
                return
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not data:
                self.eof = True
            self.received += data

    def pending(self) -> bytes:
        """
        Everything received so far, without taking it.
        """
        self._pump()
        return bytes(self.received)

    async def send(self, data: bytes) -> None:
        """
        Write all of C{data}.
        """
        deadline = time.monotonic() + STEP_TIMEOUT
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("timed out writing") from None
                await sleep(0.01)

    async def read(self, count: int, what: str) -> bytes:
        """
        Take exactly C{count} bytes, failing if the connection ends first or
        they take longer than L{STEP_TIMEOUT}.
        """
        await until(
            lambda: len(self.pending()) >= count or self.eof, what, STEP_TIMEOUT
        )
        if len(self.received) < count:
            raise AssertionError(
                f"end-of-file before {what}: got only {bytes(self.received)!r}"
            )
        data = bytes(self.received[:count])
        del self.received[:count]
        return data

    async def readToEOF(self, what: str) -> bytes:
        """
        Take everything up to end-of-file.
        """

        def atEOF() -> bool:
            self._pump()
            return self.eof

        await until(atEOF, what, STEP_TIMEOUT)
        data = bytes(self.received)
        self.received.clear()
        return data

    def shutdownWrite(self) -> None:
        """
        Send end-of-file (a FIN); reading goes on.
        """
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """
        Close the socket (idempotent).
        """
        self.sock.close()


async def connectSocket(port: int) -> socket.socket:
    """
    A non-blocking socket connected to 127.0.0.1:C{port}.

    @raise OSError: The connection failed (say, C{ECONNREFUSED}).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect_ex(("127.0.0.1", port))
        await until(
            lambda: bool(select.select([], [sock], [], 0)[1]),
            f"connecting to 127.0.0.1:{port}",
            STEP_TIMEOUT,
        )
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, f"connecting to 127.0.0.1:{port} failed")
    except BaseException:
        sock.close()
        raise
    return sock


class HangingTarget:
    """
    A loopback port whose listener never accepts and whose queue is full:
    a SYN to it is dropped, so a dial to it hangs.  On Linux a listener
    with a backlog of 0 queues one connection; one plain connection (the
    filler) takes that slot.

    @ivar port: Where it listens on 127.0.0.1.
    """

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self._sockets = [self.listener]

    async def fill(self) -> None:
        """
        Take the one queue slot with a connection.
        """
        self._sockets.append(await connectSocket(self.port))

    async def release(self) -> socket.socket:
        """
        Accept the filler and close both its ends: the slot is free again,
        so a dialler's next SYN is answered.  Then accept that connection.
        """
        filler, _ = self.listener.accept()
        filler.close()
        self._sockets.pop().close()
        accepted: list[socket.socket] = []

        def accept() -> bool:
            try:
                accepted.append(self.listener.accept()[0])
            except BlockingIOError:
                return False
            return True

        await until(accept, "the delayed target to accept", STEP_TIMEOUT)
        [connection] = accepted
        self._sockets.append(connection)
        connection.setblocking(False)
        return connection

    def close(self) -> None:
        """
        Close the listener and every connection.
        """
        for sock in self._sockets:
            sock.close()


# The targets the server reaches.


@implementer(IHalfCloseableProtocol)
class EchoProtocol(Protocol):
    """
    Echoes every byte, and closes once it reads end-of-file.

    @ivar received: Everything received.
    @ivar receivedAtEOF: How many bytes had arrived at end-of-file, or
        C{None} before it.
    """

    def __init__(self) -> None:
        self.received = b""
        self.receivedAtEOF: int | None = None
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        assert self.transport is not None
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.receivedAtEOF = len(self.received)
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


class EchoFactory(Factory):
    """
    Makes an L{EchoProtocol} for each connection and keeps them.
    """

    noisy = False

    def __init__(self) -> None:
        self.connections: list[EchoProtocol] = []

    def buildProtocol(self, addr: IAddress | None) -> EchoProtocol:
        protocol = EchoProtocol()
        self.connections.append(protocol)
        return protocol


class UDPEcho(DatagramProtocol):
    """
    Sends every datagram back where it came from.
    """

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.write(datagram, addr)


# The server.


@implementer(IStreamClientEndpoint)
class _RecordedEndpoint:
    """
    The server's own default endpoint for a destination, recording how each
    of its connection attempts ends.
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint, attempts: list[Attempt]
    ) -> None:
        self._endpoint = endpoint
        self._attempts = attempts

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        attempt = Attempt()
        self._attempts.append(attempt)
        connecting = self._endpoint.connect(protocolFactory)
        connecting.addBoth(attempt.settled)
        return connecting


@implementer(IStreamClientEndpoint)
class _UnreachableEndpoint:
    """
    An endpoint for a destination the tests must never reach: fails at once.
    """

    def __init__(self, host: str) -> None:
        self._host = host

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        return defer.fail(DNSLookupError(f"{self._host} (not dialled by these tests)"))


class Attempt:
    """
    One dial the server made: C{outcome} is C{None} while it is under way,
    then what its L{Deferred} fired with.
    """

    outcome: object = None

    def settled(self, result: object) -> object:
        """
        Record C{result} and pass it on unchanged.
        """
        self.outcome = result
        return result

    @property
    def cancelled(self) -> bool:
        """
        Whether the dial was abandoned: it failed as cancelled (a TCP
        endpoint's dial fails with L{ConnectingCancelledError} when its
        L{Deferred} is cancelled).
        """
        return isinstance(self.outcome, Failure) and bool(
            self.outcome.check(defer.CancelledError, ConnectingCancelledError)
        )


class LoopbackDialler:
    """
    The server's default dialler, for loopback destinations only: IP
    literals on loopback and the name C{localhost} are dialled as the server
    would by default; anything else fails without a lookup, so that no test
    sends a DNS query or a packet off this machine.

    @ivar attempts: Each loopback dial, in order.
    """

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def __call__(self, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            return _UnreachableEndpoint(host)
        return _RecordedEndpoint(
            endpointFor(reactor, host, port, timeout), self.attempts
        )


class LoopbackTestCase(TestCase):
    """
    Starts servers, targets and plain-socket clients on loopback, and makes
    sure each test ends with all of them closed and every session logged.
    """

    timeout = 60

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        self.factories: list[CountingServerFactory] = []
        observer = cast(ILogObserver, self._observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def _observe(self, event: LogEvent) -> None:
        if str(event.get("log_namespace", "")).startswith("socks_twisted.server"):
            self.events.append(event)

    @property
    def sessionEvents(self) -> list[LogEvent]:
        """
        The session-end events logged so far.
        """
        return [
            e
            for e in self.events
            if e.get("log_namespace") == SOCKSServerProtocol.__module__
            and "bytesFromClient" in e
        ]

    @property
    def associationEvents(self) -> list[LogEvent]:
        """
        The UDP association-end events logged so far.
        """
        return [
            e
            for e in self.events
            if e.get("log_namespace") == UDPAssociation.__module__
        ]

    async def startServer(
        self, interface: str = "127.0.0.1", register: bool = True, **settings: Any
    ) -> tuple[CountingServerFactory, int, LoopbackDialler]:
        """
        Our SOCKS server on an ephemeral port of C{interface}, told its
        listening address as the twistd service tells it (unless not
        C{register}); at the end of the test, wait for every session it
        accepted to end.
        """
        dialler = LoopbackDialler()
        factory = CountingServerFactory(reactor, endpointFor=dialler, **settings)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface=interface)
        listening: IListeningPort = await endpoint.listen(factory)
        self.addCleanup(listening.stopListening)
        if register:
            factory.addListeningAddress(listening.getHost())
        self.factories.append(factory)
        self.addCleanup(self._sessionsEnded)
        return factory, cast(int, listening.getHost().port), dialler  # type: ignore[attr-defined]

    async def _sessionsEnded(self) -> None:
        def ended() -> bool:
            accepted = sum(f.accepted for f in self.factories)
            open = any(f.sessions for f in self.factories)
            return not open and len(self.sessionEvents) >= accepted

        await until(ended, "every session to end and be logged", STEP_TIMEOUT)

    async def startEcho(self) -> tuple[EchoFactory, int]:
        """
        A TCP echo target on an ephemeral loopback port.
        """
        factory = EchoFactory()
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening: IListeningPort = await endpoint.listen(factory)
        self.addCleanup(self._echoClosed, factory)
        self.addCleanup(listening.stopListening)
        return factory, cast(int, listening.getHost().port)  # type: ignore[attr-defined]

    async def _echoClosed(self, factory: EchoFactory) -> None:
        for connection in factory.connections:
            if not connection.lost and connection.transport is not None:
                connection.transport.abortConnection()  # type: ignore[attr-defined]
        await until(
            lambda: all(c.lost for c in factory.connections),
            "the echo target's connections to close",
            STEP_TIMEOUT,
        )

    def startUDPEcho(self) -> int:
        """
        A UDP echo target on an ephemeral loopback port.
        """
        port = cast(IReactorUDP, reactor).listenUDP(0, UDPEcho(), "127.0.0.1", 65535)
        self.addCleanup(port.stopListening)
        return cast(int, port.getHost().port)  # type: ignore[attr-defined]

    def hangingTarget(self) -> HangingTarget:
        """
        A L{HangingTarget}, closed at the end of the test.
        """
        requireLinux()
        target = HangingTarget()
        self.addCleanup(target.close)
        return target

    async def client(self, port: int) -> RawSocket:
        """
        A plain socket connected to our server; closed at the end of the
        test.
        """
        client = RawSocket(await connectSocket(port))
        self.addCleanup(client.close)
        return client

    async def eventFor(self, client: RawSocket) -> LogEvent:
        """
        The one session-end event of C{client}'s session, once logged.
        """

        def logged() -> list[LogEvent]:
            return [e for e in self.sessionEvents if e["client"] == client.name]

        await until(
            lambda: bool(logged()), f"the session of {client.name} to end", STEP_TIMEOUT
        )
        await sleep(0.05)  # room for a duplicate, if there were one
        events = logged()
        self.assertEqual(len(events), 1, events)
        return events[0]

    async def assertEchoes(self, client: RawSocket, data: bytes) -> None:
        """
        C{client} relays to an echo target: C{data} comes back.
        """
        await client.send(data)
        self.assertEqual(await client.read(len(data), "the echo"), data)

    async def connectThrough(self, proxyPort: int, targetPort: int) -> RawSocket:
        """
        A client whose SOCKS5 CONNECT to 127.0.0.1:C{targetPort} succeeded.
        """
        client = await self.client(proxyPort)
        await client.send(GREETING + connect5("127.0.0.1", targetPort))
        self.assertEqual(await client.read(2, "the method selection"), NO_AUTH_CHOSEN)
        code, host, port = parseReply5(await client.read(REPLY_LENGTH, "the reply"))
        self.assertEqual((code, host), (0, "127.0.0.1"))
        self.assertNotEqual(port, 0)
        return client


class DepartureTests(LoopbackTestCase):
    """
    Clients that send end-of-file before their reply and are gone: their
    slots come back within the grace, not the connect or BIND timeout.
    """

    async def test_connectingClientsLeave(self) -> None:
        """
        Five clients fill a server of five sessions with CONNECTs to a
        target that never answers, then close.  While they wait, the server
        is locked out (a sixth connection is closed unserved); once they
        have left, their dials are abandoned and a sixth client is served
        within the grace plus a margin, well under the 30 s connect timeout.
        Each of the five sessions logs that its client left while
        connecting.
        """
        factory, proxyPort, dialler = await self.startServer(
            maxSessions=5, connectTimeout=30
        )
        hanging = self.hangingTarget()
        await hanging.fill()
        _, echoPort = await self.startEcho()
        clients = [await self.client(proxyPort) for _ in range(5)]
        for client in clients:
            await client.send(GREETING + connect5("127.0.0.1", hanging.port))
        for client in clients:
            self.assertEqual(
                await client.read(2, "the method selection"), NO_AUTH_CHOSEN
            )

        # The dials hang: no reply, five SYNs unanswered.
        await sleep(HANG_CHECK)
        self.assertEqual([c.pending() for c in clients], [b""] * 5)
        self.assertEqual(dialsTo(hanging.port), 5)
        self.assertEqual([a.outcome for a in dialler.attempts], [None] * 5)

        # Locked out: a sixth connection is accepted by the kernel and closed.
        extra = await self.client(proxyPort)
        self.assertEqual(await extra.readToEOF("the extra connection to close"), b"")
        self.assertEqual(len(factory.sessions), 5)
        [refusal] = [e for e in self.events if "refusing connection" in formatEvent(e)]
        self.assertIn("5 sessions open, the limit", formatEvent(refusal))

        for client in clients:
            client.shutdownWrite()
            client.close()
        await until(lambda: not factory.sessions, "the slots to free", RELEASE_BOUND)

        served = await self.connectThrough(proxyPort, echoPort)
        await self.assertEchoes(served, b"served")

        self.assertEqual(dialsTo(hanging.port), 0)
        self.assertEqual(len(dialler.attempts), 6)
        self.assertEqual([a.cancelled for a in dialler.attempts[:5]], [True] * 5)
        for client in clients:
            event = await self.eventFor(client)
            self.assertTrue(
                event["reason"].startswith("client left during connecting"),
                event["reason"],
            )
            self.assertEqual(event["target"], f"127.0.0.1:{hanging.port}")
            self.assertIsNone(event["reply"])  # no reply was sent

    async def test_bindingClientsLeave(self) -> None:
        """
        Five clients fill a server of five sessions with BINDs, read the
        first reply (their listener's address), and close.  Within the
        grace plus a margin, every listener they were told of is closed (a
        connection to it is refused) and the slots are free: a sixth BIND is
        served through to its peer.
        """
        requireLinux()
        factory, proxyPort, _ = await self.startServer(maxSessions=5)
        clients = [await self.client(proxyPort) for _ in range(5)]
        listeners = []
        for client in clients:
            await client.send(GREETING + bind5("127.0.0.1", 0))
            self.assertEqual(
                await client.read(2, "the method selection"), NO_AUTH_CHOSEN
            )
            code, host, port = parseReply5(await client.read(REPLY_LENGTH, "reply 1"))
            self.assertEqual((code, host), (0, "127.0.0.1"))
            listeners.append(port)
        self.assertEqual(len(set(listeners)), 5)
        self.assertEqual([isListening(p) for p in listeners], [True] * 5)

        extra = await self.client(proxyPort)
        self.assertEqual(await extra.readToEOF("the extra connection to close"), b"")

        for client in clients:
            client.shutdownWrite()
            client.close()
        await until(lambda: not factory.sessions, "the slots to free", RELEASE_BOUND)
        await until(
            lambda: not any(isListening(p) for p in listeners),
            "the BIND listeners to close",
            STEP_TIMEOUT,
        )
        for port in listeners:
            with self.assertRaises(ConnectionRefusedError):
                await connectSocket(port)

        # A sixth BIND is served, its peer and all.
        sixth = await self.client(proxyPort)
        await sixth.send(GREETING + bind5("127.0.0.1", 0))
        self.assertEqual(await sixth.read(2, "the method selection"), NO_AUTH_CHOSEN)
        _, _, listenerPort = parseReply5(await sixth.read(REPLY_LENGTH, "reply 1"))
        peer = RawSocket(await connectSocket(listenerPort))
        self.addCleanup(peer.close)
        code, host, port = parseReply5(await sixth.read(REPLY_LENGTH, "reply 2"))
        self.assertEqual(
            (code, host, port), (0, "127.0.0.1", int(peer.name.split(":")[1]))
        )
        await peer.send(b"from the peer")
        self.assertEqual(await sixth.read(13, "the peer's bytes"), b"from the peer")
        sixth.shutdownWrite()
        self.assertEqual(await peer.readToEOF("end-of-file at the peer"), b"")
        peer.close()
        self.assertEqual(await sixth.readToEOF("end-of-file at the client"), b"")

        for client in clients:
            event = await self.eventFor(client)
            self.assertEqual(event["command"], "BIND")
            self.assertTrue(
                event["reason"].startswith(
                    "client left during waiting for the BIND peer"
                ),
                event["reason"],
            )


class PipelinedHalfCloseTests(LoopbackTestCase):
    """
    A client that pipelines its request and data and half-closes is served
    when the target answers within the grace.
    """

    #: What the client sends after its request.
    PAYLOAD = b"pipelined payload \x00\xff" * 100

    async def test_targetAnswersAtOnce(self) -> None:
        """
        Greeting, CONNECT, payload and end-of-file in one go: the target
        gets exactly the payload and then end-of-file; the client gets the
        method selection, the success reply and the echo, then end-of-file.
        """
        _, proxyPort, _ = await self.startServer()
        echo, echoPort = await self.startEcho()
        client = await self.client(proxyPort)
        await client.send(GREETING + connect5("127.0.0.1", echoPort) + self.PAYLOAD)
        client.shutdownWrite()
        received = await client.readToEOF("the whole answer")
        self.assertEqual(received[:2], NO_AUTH_CHOSEN)
        code, host, _ = parseReply5(received[2 : 2 + REPLY_LENGTH])
        self.assertEqual((code, host), (0, "127.0.0.1"))
        self.assertEqual(received[2 + REPLY_LENGTH :], self.PAYLOAD)
        [target] = echo.connections
        self.assertEqual(target.received, self.PAYLOAD)
        self.assertEqual(target.receivedAtEOF, len(self.PAYLOAD))
        event = await self.eventFor(client)
        self.assertEqual(event["reply"], 0)
        self.assertEqual(event["bytesFromClient"], len(self.PAYLOAD))
        self.assertEqual(event["bytesToClient"], len(self.PAYLOAD))

    async def test_targetAnswersAfterASecond(self) -> None:
        """
        The same, to a target whose queue is full at first, so that the
        server's first SYN goes unanswered and its dial succeeds only on a
        retransmission (about a second later), after the client's
        end-of-file but within the grace: the target still gets exactly the
        payload and end-of-file, and the client its replies and the answer.
        """
        _, proxyPort, _ = await self.startServer()
        target = self.hangingTarget()
        await target.fill()
        client = await self.client(proxyPort)
        await client.send(GREETING + connect5("127.0.0.1", target.port) + self.PAYLOAD)
        client.shutdownWrite()
        self.assertEqual(await client.read(2, "the method selection"), NO_AUTH_CHOSEN)
        await sleep(0.5)  # under the SYN retransmission interval (1 s)
        self.assertEqual(client.pending(), b"")
        self.assertEqual(dialsTo(target.port), 1)

        connection = RawSocket(await target.release())
        self.assertEqual(await connection.readToEOF("the payload"), self.PAYLOAD)
        await connection.send(b"answer")
        connection.shutdownWrite()

        received = await client.readToEOF("the reply and the answer")
        code, host, _ = parseReply5(received[:REPLY_LENGTH])
        self.assertEqual((code, host), (0, "127.0.0.1"))
        self.assertEqual(received[REPLY_LENGTH:], b"answer")
        event = await self.eventFor(client)
        self.assertEqual(event["reply"], 0)
        self.assertEqual(event["bytesFromClient"], len(self.PAYLOAD))
        connection.close()


class OwnAddressTests(LoopbackTestCase):
    """
    The server refuses to reach itself: CONNECT or BIND to its own
    listening address, or a UDP datagram to it.
    """

    async def refused(
        self, proxyPort: int, request: bytes, replyLength: int
    ) -> tuple[RawSocket, bytes]:
        """
        Send C{request}; everything the server answers before end-of-file.
        """
        client = await self.client(proxyPort)
        await client.send(request)
        answer = await client.readToEOF("the refusal")
        client.close()
        self.assertEqual(len(answer), replyLength, answer)
        return client, answer

    async def assertOwnAddressRefused(self, client: RawSocket) -> None:
        """
        C{client}'s session logged that the destination is the server's own
        listening address.
        """
        event = await self.eventFor(client)
        self.assertIn("own listening address", event["reason"])

    async def test_connectSOCKS5(self) -> None:
        """
        A SOCKS5 CONNECT to the server's own 127.0.0.1 address (learnt from
        the client's own connection, nothing registered) gets reply 2 (not
        allowed), and no nested session is opened.
        """
        factory, proxyPort, dialler = await self.startServer(register=False)
        client, answer = await self.refused(
            proxyPort, GREETING + connect5("127.0.0.1", proxyPort), 2 + REPLY_LENGTH
        )
        self.assertEqual(answer, NO_AUTH_CHOSEN + failure5(2))
        await self.assertOwnAddressRefused(client)
        self.assertEqual(factory.accepted, 1)
        self.assertEqual(dialler.attempts, [])

    async def test_connectSOCKS4(self) -> None:
        """
        A SOCKS4 CONNECT to the server's own address gets CD 91, and no
        nested session is opened.
        """
        factory, proxyPort, dialler = await self.startServer()
        request = bytes.fromhex("04 01") + struct.pack("!H", proxyPort)
        request += bytes.fromhex("7f000001 00")
        client, answer = await self.refused(proxyPort, request, SOCKS4_REPLY_LENGTH)
        self.assertEqual(answer, SOCKS4_REJECTED)
        await self.assertOwnAddressRefused(client)
        self.assertEqual(factory.accepted, 1)
        self.assertEqual(dialler.attempts, [])

    async def test_wildcardListener(self) -> None:
        """
        A server listening on 0.0.0.0 (reached on 127.0.0.1) refuses
        CONNECTs to its port on 127.0.0.1 and on 127.0.0.2 with reply 2.
        """
        factory, proxyPort, dialler = await self.startServer(interface="0.0.0.0")
        for host in ("127.0.0.1", "127.0.0.2"):
            client, answer = await self.refused(
                proxyPort, GREETING + connect5(host, proxyPort), 2 + REPLY_LENGTH
            )
            self.assertEqual(answer, NO_AUTH_CHOSEN + failure5(2), host)
            await self.assertOwnAddressRefused(client)
        self.assertEqual(factory.accepted, 2)
        self.assertEqual(dialler.attempts, [])

    async def test_nameResolvingToItself(self) -> None:
        """
        A CONNECT to C{localhost} at the server's port is dialled (only then
        is the address known), then refused with reply 2; the nested
        connection carried no request, and the server goes on serving.
        """
        factory, proxyPort, _ = await self.startServer()
        _, echoPort = await self.startEcho()
        client, answer = await self.refused(
            proxyPort, GREETING + connect5("localhost", proxyPort), 2 + REPLY_LENGTH
        )
        self.assertEqual(answer, NO_AUTH_CHOSEN + failure5(2))
        await self.assertOwnAddressRefused(client)
        await until(
            lambda: not factory.sessions, "the nested session to end", STEP_TIMEOUT
        )
        self.assertEqual(factory.accepted, 2)
        [nested] = [e for e in self.sessionEvents if e["client"] != client.name]
        self.assertEqual((nested["command"], nested["bytesFromClient"]), ("-", 0))

        healthy = await self.connectThrough(proxyPort, echoPort)
        await self.assertEchoes(healthy, b"still serving")

    async def test_bind(self) -> None:
        """
        A BIND whose expected peer is the server's own address and port is
        refused with reply 2.
        """
        _, proxyPort, _ = await self.startServer()
        client, answer = await self.refused(
            proxyPort, GREETING + bind5("127.0.0.1", proxyPort), 2 + REPLY_LENGTH
        )
        self.assertEqual(answer, NO_AUTH_CHOSEN + failure5(2))
        await self.assertOwnAddressRefused(client)

    async def test_udpDatagram(self) -> None:
        """
        A UDP datagram addressed to the server's own listening address and
        port is dropped (a socket waiting there gets nothing) and counted as
        such, while one to a UDP echo target is relayed and answered.
        """
        _, proxyPort, _ = await self.startServer()
        echoPort = self.startUDPEcho()
        witness = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(witness.close)
        witness.setblocking(False)
        try:
            witness.bind(("127.0.0.1", proxyPort))
            watching = True
        except OSError as e:  # the same number taken for UDP: only the count then
            self.assertEqual(e.errno, errno.EADDRINUSE)
            watching = False

        control = await self.client(proxyPort)
        await control.send(GREETING + socks5Request(3, "0.0.0.0", 0))
        self.assertEqual(await control.read(2, "the method selection"), NO_AUTH_CHOSEN)
        code, relayHost, relayPort = parseReply5(
            await control.read(REPLY_LENGTH, "reply")
        )
        self.assertEqual((code, relayHost), (0, "127.0.0.1"))

        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.setblocking(False)
        udp.bind(("127.0.0.1", 0))
        udp.sendto(
            udpHeader("127.0.0.1", proxyPort) + b"to myself", (relayHost, relayPort)
        )
        udp.sendto(
            udpHeader("127.0.0.1", echoPort) + b"to the echo", (relayHost, relayPort)
        )
        answers: list[bytes] = []

        def answered() -> bool:
            try:
                answers.append(udp.recv(65536))
            except BlockingIOError:
                return False
            return True

        await until(answered, "the echo's answer", STEP_TIMEOUT)
        self.assertEqual(answers, [udpHeader("127.0.0.1", echoPort) + b"to the echo"])
        if watching:
            # Sent before the echo's datagram: it would have arrived by now.
            with self.assertRaises(BlockingIOError):
                witness.recv(65536)

        control.shutdownWrite()
        self.assertEqual(await control.readToEOF("the control connection to end"), b"")
        await until(
            lambda: bool(self.associationEvents), "the association's end", STEP_TIMEOUT
        )
        [event] = self.associationEvents
        self.assertEqual(event["drops"], {"own address": 1})
        self.assertEqual(
            (event["datagramsFromClient"], event["datagramsToClient"]), (1, 1)
        )
        self.assertIn("own address: 1", formatEvent(event))


class ForeignProtocolTests(LoopbackTestCase):
    """
    Other protocols sent to the SOCKS port by mistake get a clear answer,
    or a clean close, and a log line that says what they were.
    """

    REQUEST = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"

    def assertHTTPAnswer(self, answer: bytes) -> None:
        """
        C{answer} is the 501 that says this is a SOCKS proxy.
        """
        self.assertTrue(answer.startswith(b"HTTP/1.0 501 Not Implemented\r\n"), answer)
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"This is a SOCKS proxy", body)

    async def test_httpRequest(self) -> None:
        """
        An HTTP proxy request gets a 501 whose body says this is a SOCKS
        proxy, then end-of-file.
        """
        _, proxyPort, _ = await self.startServer()
        client = await self.client(proxyPort)
        await client.send(self.REQUEST)
        self.assertHTTPAnswer(await client.readToEOF("the HTTP answer"))
        client.close()
        event = await self.eventFor(client)
        self.assertIn("an HTTP request", event["reason"])

    async def test_httpRequestByteByByte(self) -> None:
        """
        The same request arriving one byte at a time gets the same answer.
        """
        _, proxyPort, _ = await self.startServer()
        client = await self.client(proxyPort)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in self.REQUEST:
            await client.send(bytes([byte]))
            await sleep(0.005)
        client.shutdownWrite()
        self.assertHTTPAnswer(await client.readToEOF("the HTTP answer"))
        client.close()
        event = await self.eventFor(client)
        self.assertIn("an HTTP request", event["reason"])

    async def test_tlsClientHello(self) -> None:
        """
        A TLS ClientHello is closed without a reply, and the log names it.
        """
        _, proxyPort, _ = await self.startServer()
        client = await self.client(proxyPort)
        # A TLS 1.0 record header (handshake, 3.1, length 49), the start of
        # a ClientHello (type 1, length 45, version 3.3) and some random.
        hello = bytes.fromhex("16 0301 0031 01 00002d 0303") + bytes(range(32))
        await client.send(hello)
        self.assertEqual(await client.readToEOF("the server to close"), b"")
        client.close()
        event = await self.eventFor(client)
        self.assertIn("TLS ClientHello", event["reason"])
        self.assertIsNone(event["reply"])  # no reply was sent

    async def test_partialPrefixThenClose(self) -> None:
        """
        C{GE} (HTTP or not, it cannot yet tell) and then end-of-file: the
        session ends at once, well before its 30 s handshake timeout, and is
        logged.
        """
        _, proxyPort, _ = await self.startServer(handshakeTimeout=30)
        client = await self.client(proxyPort)
        await client.send(b"GE")
        client.shutdownWrite()
        self.assertEqual(await client.readToEOF("the server to close"), b"")
        client.close()
        event = await self.eventFor(client)
        self.assertIn("closed the connection during the handshake", event["reason"])


class LogEscapingTests(LoopbackTestCase):
    """
    What clients send reaches the session log escaped: no line can be
    forged and no terminal escape reaches it.
    """

    def assertEscaped(self, text: str) -> None:
        """
        C{text} has no newline, carriage return or escape byte.
        """
        for raw in ("\n", "\r", "\x1b"):
            self.assertNotIn(raw, text)

    async def test_forgedUsername(self) -> None:
        """
        A user whose name carries a newline, a forged log line, a carriage
        return and an ANSI colour logs in and relays; its session's log
        text has each of those bytes escaped.
        """
        user = b"x\nINFO FORGED login ok\r\x1b[31m"
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(user, b"pw")
        _, proxyPort, _ = await self.startServer(portal=portalFor([checker]))
        _, echoPort = await self.startEcho()
        client = await self.client(proxyPort)
        await client.send(GREETING_PASSWORD)
        self.assertEqual(await client.read(2, "the method selection"), PASSWORD_CHOSEN)
        await client.send(bytes([1, len(user)]) + user + bytes([2]) + b"pw")
        self.assertEqual(await client.read(2, "the RFC 1929 status"), PASSWORD_ACCEPTED)
        await client.send(connect5("127.0.0.1", echoPort))
        code, _, _ = parseReply5(await client.read(REPLY_LENGTH, "the reply"))
        self.assertEqual(code, 0)
        await self.assertEchoes(client, b"hello")
        client.shutdownWrite()
        self.assertEqual(await client.readToEOF("the session to end"), b"")
        client.close()

        text = formatEvent(await self.eventFor(client))
        self.assertEscaped(text)
        self.assertIn(
            "user=x\\x0aINFO\\x20FORGED\\x20login\\x20ok\\x0d\\x1b[31m ", text
        )

    async def test_socks4aName(self) -> None:
        """
        A SOCKS4a request for a name with an escape byte is logged with the
        name escaped, as version 4a.
        """
        _, proxyPort, _ = await self.startServer()
        client = await self.client(proxyPort)
        await client.send(
            bytes.fromhex("04 01 0050 00000001 00") + b"evil\x1b[2J.example\x00"
        )
        answer = await client.readToEOF("the refusal")
        self.assertEqual(answer[:2], SOCKS4_REJECTED[:2])
        client.close()
        event = await self.eventFor(client)
        text = formatEvent(event)
        self.assertEscaped(text)
        self.assertEqual(event["version"], "4a")
        self.assertIn(" version=4a ", text)
        self.assertIn(" target=evil\\x1b[2J.example:80 ", text)
