"""
Shared helpers for the wire tests: connections put into a given handshake
state, and a driver that feeds bytes in chunks and answers every event the
natural way, recording what happened.

The bytes the helpers feed to put a connection into a state are written by
hand as hex; the helpers only call C{send} on the connection under test to
advance it, never to produce an expected value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar

from socks_twisted._wire import (
    NEED_DATA,
    AuthMethod,
    ClientConnection,
    Command,
    HandshakeState,
    Message,
    MethodSelection,
    ProtocolError,
    ServerConnection,
    SOCKS4Reply,
    SOCKS4ReplyCode,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5ReplyCode,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
)

AnyConnection = ServerConnection | ClientConnection
ConnectionFactory = Callable[[], AnyConnection]

#: Every message class a connection may return from C{nextEvent}.
MESSAGE_TYPES: tuple[type, ...] = (
    SOCKS4Request,
    SOCKS4Reply,
    SOCKS5Greeting,
    MethodSelection,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
    SOCKS5Request,
    SOCKS5Reply,
)

#: No SOCKS message is longer than 8 + 256 + 256 bytes (a SOCKS4a request
#: with a 255-byte user ID and a 255-byte hostname), so a connection that
#: holds more than this while still asking for data buffers without bound.
MAX_HELD_WHILE_NEED_DATA = 600


# Connections in a given state.  Each one is RECEIVING when returned.


def serverAwaitingFirstMessage() -> ServerConnection:
    """
    A fresh server connection: it reads a SOCKS4 request or a SOCKS5
    greeting.
    """
    return ServerConnection()


def _serverAfterGreeting(greeting: bytes, method: AuthMethod) -> ServerConnection:
    conn = ServerConnection()
    conn.receiveData(greeting)
    event = conn.nextEvent()
    assert isinstance(event, SOCKS5Greeting), event
    conn.send(MethodSelection(method))
    assert conn.state is HandshakeState.RECEIVING, conn.state
    return conn


def serverAwaitingAuthentication() -> ServerConnection:
    """
    A server that read the greeting C{05 01 02} and selected
    username/password: it reads an RFC 1929 request.
    """
    return _serverAfterGreeting(bytes.fromhex("05 01 02"), AuthMethod.USERNAME_PASSWORD)


def serverAwaitingRequest() -> ServerConnection:
    """
    A server that read the greeting C{05 01 00} and selected no
    authentication: it reads a SOCKS5 request.
    """
    return _serverAfterGreeting(bytes.fromhex("05 01 00"), AuthMethod.NO_AUTHENTICATION)


#: What the clients below offer in their greeting.
OFFERED_METHODS = (AuthMethod.NO_AUTHENTICATION, AuthMethod.USERNAME_PASSWORD)


def clientAwaitingMethodSelection() -> ClientConnection:
    """
    A client that sent a greeting offering methods 00 and 02: it reads the
    server's method selection.
    """
    conn = ClientConnection()
    conn.send(SOCKS5Greeting(tuple(OFFERED_METHODS)))
    assert conn.state is HandshakeState.RECEIVING, conn.state
    return conn


def clientAwaitingAuthenticationStatus() -> ClientConnection:
    """
    A client whose server selected username/password (C{05 02}) and that sent
    its credentials: it reads an RFC 1929 status.
    """
    conn = clientAwaitingMethodSelection()
    conn.receiveData(bytes.fromhex("05 02"))
    event = conn.nextEvent()
    assert event == MethodSelection(AuthMethod.USERNAME_PASSWORD), event
    conn.send(UsernamePasswordRequest(b"fred", b"secret"))
    assert conn.state is HandshakeState.RECEIVING, conn.state
    return conn


def clientAwaitingSOCKS5Reply(command: Command = Command.CONNECT) -> ClientConnection:
    """
    A client whose server selected no authentication (C{05 00}) and that
    sent a request with C{command}: it reads a SOCKS5 reply.
    """
    conn = clientAwaitingMethodSelection()
    conn.receiveData(bytes.fromhex("05 00"))
    event = conn.nextEvent()
    assert event == MethodSelection(AuthMethod.NO_AUTHENTICATION), event
    conn.send(SOCKS5Request(command, "example.com", 80))
    assert conn.state is HandshakeState.RECEIVING, conn.state
    return conn


def clientAwaitingSOCKS4Reply(command: Command = Command.CONNECT) -> ClientConnection:
    """
    A client that sent a SOCKS4 request with C{command}: it reads a SOCKS4
    reply.
    """
    conn = ClientConnection()
    conn.send(SOCKS4Request(command, "127.0.0.1", 80, b"fred"))
    assert conn.state is HandshakeState.RECEIVING, conn.state
    return conn


# Feeding bytes in chunks.


def wholeChunks(data: bytes) -> list[bytes]:
    """
    Deliver C{data} in one chunk.
    """
    return [data]


def byteChunks(data: bytes) -> list[bytes]:
    """
    Deliver C{data} one byte at a time.
    """
    return [data[i : i + 1] for i in range(len(data))]


def splitAt(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """
    Deliver C{data} in chunks cut at the given offsets (clamped to the data,
    in any order, duplicates giving empty chunks).
    """
    offsets = sorted(min(max(cut, 0), len(data)) for cut in cuts)
    bounds = [0, *offsets, len(data)]
    return [data[start:end] for start, end in pairwise(bounds)]


@dataclass
class Transcript:
    """
    What happened while feeding a connection.

    @ivar events: The messages C{nextEvent} returned, in order.
    @ivar sent: The bytes C{send} returned for the answers, in order.
    @ivar error: C{(reason, reply)} of the L{ProtocolError} that ended the
        feeding, or C{None}.
    @ivar trailing: C{takeTrailingData()} after the last chunk, or C{None}
        when an error ended the feeding.
    @ivar state: The handshake state at the end.
    @ivar maxHeld: The most bytes the connection held while it returned
        C{NEED_DATA} in the RECEIVING state.
    """

    events: list[Message]
    sent: list[bytes]
    error: tuple[str, bytes | None] | None
    trailing: bytes | None
    state: HandshakeState
    maxHeld: int

    def outcome(
        self,
    ) -> tuple[
        list[Message],
        list[bytes],
        tuple[str, bytes | None] | None,
        bytes | None,
        HandshakeState,
    ]:
        """
        Everything but C{maxHeld}, which depends on how the bytes were cut.
        """
        return self.events, self.sent, self.error, self.trailing, self.state


C = TypeVar("C", ServerConnection, ClientConnection)
Answer = Callable[[C, Message], list[bytes]]


def drive(conn: C, chunks: Iterable[bytes], answer: Answer[C]) -> Transcript:
    """
    Feed C{chunks} to C{conn} one by one; after each, take every event it
    has, answering each with C{answer}.  Stop at the first L{ProtocolError}.
    Any other exception propagates.
    """
    events: list[Message] = []
    sent: list[bytes] = []
    maxHeld = 0
    for chunk in chunks:
        conn.receiveData(chunk)
        while True:
            try:
                event = conn.nextEvent()
            except ProtocolError as e:
                return Transcript(
                    events, sent, (e.reason, e.reply), None, conn.state, maxHeld
                )
            if event is NEED_DATA:
                if conn.state is HandshakeState.RECEIVING:
                    # There is no public way to ask how much a connection
                    # buffers, and the bound on exactly that buffer is what
                    # is under test, so reading the private attribute is the
                    # honest measurement here.
                    maxHeld = max(maxHeld, len(conn._buffer))
                break
            if not isinstance(event, MESSAGE_TYPES):
                raise AssertionError(f"nextEvent returned {event!r}")
            events.append(event)
            sent.extend(answer(conn, event))
    return Transcript(events, sent, None, conn.takeTrailingData(), conn.state, maxHeld)


def _sendWhileSending(
    conn: AnyConnection, make: Callable[[], Iterator[bytes]]
) -> list[bytes]:
    out = list(make())
    assert conn.state is not HandshakeState.SENDING, conn.state
    return out


def serverAnswer(useAuthentication: bool) -> Answer[ServerConnection]:
    """
    The natural answers of a server: select username/password or no
    authentication, accept any credentials, grant every request (twice for
    BIND, whose second reply names the peer).
    """

    def answer(conn: ServerConnection, event: Message) -> list[bytes]:
        def replies() -> Iterator[bytes]:
            if isinstance(event, SOCKS5Greeting):
                yield conn.send(
                    MethodSelection(
                        AuthMethod.USERNAME_PASSWORD
                        if useAuthentication
                        else AuthMethod.NO_AUTHENTICATION
                    )
                )
            elif isinstance(event, UsernamePasswordRequest):
                yield conn.send(UsernamePasswordStatus(0))
            elif isinstance(event, SOCKS4Request):
                for _ in range(2):
                    if conn.state is HandshakeState.SENDING:
                        yield conn.send(
                            SOCKS4Reply(SOCKS4ReplyCode.GRANTED, "192.0.2.1", 1080)
                        )
            elif isinstance(event, SOCKS5Request):
                for _ in range(2):
                    if conn.state is HandshakeState.SENDING:
                        yield conn.send(
                            SOCKS5Reply(SOCKS5ReplyCode.SUCCEEDED, "192.0.2.1", 1080)
                        )
            else:
                raise AssertionError(f"a server received {event!r}")

        return _sendWhileSending(conn, replies)

    return answer


def clientAnswer(request: SOCKS5Request) -> Answer[ClientConnection]:
    """
    The natural answers of a client: credentials when username/password is
    selected, then C{request}.  Replies need no answer.
    """

    def answer(conn: ClientConnection, event: Message) -> list[bytes]:
        def replies() -> Iterator[bytes]:
            if conn.state is not HandshakeState.SENDING:
                return
            if isinstance(event, MethodSelection):
                if event.method == AuthMethod.USERNAME_PASSWORD:
                    yield conn.send(UsernamePasswordRequest(b"fred", b"secret"))
                else:
                    yield conn.send(request)
            elif isinstance(event, UsernamePasswordStatus):
                yield conn.send(request)
            else:
                raise AssertionError(f"a client is to send after {event!r}")

        return _sendWhileSending(conn, replies)

    return answer


def driveServer(chunks: Iterable[bytes], useAuthentication: bool) -> Transcript:
    """
    Feed C{chunks} to a fresh L{ServerConnection}, answering naturally.
    """
    return drive(ServerConnection(), chunks, serverAnswer(useAuthentication))


def driveSOCKS5Client(
    chunks: Iterable[bytes], command: Command = Command.CONNECT
) -> Transcript:
    """
    Feed C{chunks} to a L{ClientConnection} that sent a greeting offering
    methods 00 and 02, answering naturally with a request for C{command}.
    """
    conn = clientAwaitingMethodSelection()
    return drive(conn, chunks, clientAnswer(SOCKS5Request(command, "example.com", 80)))


def driveSOCKS4Client(
    chunks: Iterable[bytes], command: Command = Command.CONNECT
) -> Transcript:
    """
    Feed C{chunks} to a L{ClientConnection} that sent a SOCKS4 request for
    C{command}.
    """
    conn = clientAwaitingSOCKS4Reply(command)
    return drive(conn, chunks, clientAnswer(SOCKS5Request(command, "example.com", 80)))
