"""
Connection objects: the state of one SOCKS handshake, fed with bytes.

Both sides follow the shape of h11: C{receiveData(bytes)} buffers what the
peer sent, C{nextEvent()} returns the next whole message or L{NEED_DATA},
C{send(message)} returns the bytes to write and advances the state.  After
the handshake, every byte received and not consumed is handed over by
C{takeTrailingData()}.  A L{ProtocolError} is sticky: once raised, every
later C{nextEvent()} raises it again.
"""

import functools
from collections.abc import Callable, Collection
from enum import Enum, auto
from typing import Final, TypeAlias

from ._constants import (
    LOOKUP_COMMANDS,
    SOCKS4_COMMANDS,
    SOCKS4_VERSION,
    SOCKS5_VERSION,
    AuthMethod,
    Command,
)
from ._errors import ProtocolError
from ._messages import (
    Buffer,
    MethodSelection,
    SOCKS4Reply,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
    readMethodSelection,
    readSOCKS4Reply,
    readSOCKS4Request,
    readSOCKS5Greeting,
    readSOCKS5Reply,
    readSOCKS5Request,
    readUsernamePasswordRequest,
    readUsernamePasswordStatus,
)


class _NeedData(Enum):
    NEED_DATA = auto()


#: Returned by C{nextEvent} when no whole message is buffered, or none is
#: expected before this side sends something.
NEED_DATA: Final = _NeedData.NEED_DATA

Message: TypeAlias = (
    SOCKS4Request
    | SOCKS4Reply
    | SOCKS5Greeting
    | MethodSelection
    | UsernamePasswordRequest
    | UsernamePasswordStatus
    | SOCKS5Request
    | SOCKS5Reply
)
Reader: TypeAlias = Callable[[Buffer], tuple[Message, int] | None]


class HandshakeState(Enum):
    """
    Where a handshake stands, as seen from one side.
    """

    #: Waiting for the peer's next message.
    RECEIVING = auto()
    #: Waiting for this side to send.
    SENDING = auto()
    #: The handshake succeeded; bytes now belong to the relayed stream.
    ESTABLISHED = auto()
    #: The handshake failed or was refused, or a RESOLVE or RESOLVE_PTR was
    #: answered (nothing follows it); the connection is to be closed.
    CLOSED = auto()


class _Connection:
    """
    What both sides share: the buffer, the current reader, sticky errors.
    """

    def __init__(self, reader: Reader | None) -> None:
        self._buffer = bytearray()
        self._reader = reader
        self._error: ProtocolError | None = None
        self.state = HandshakeState.RECEIVING if reader else HandshakeState.SENDING

    def receiveData(self, data: bytes) -> None:
        """
        Buffer bytes received from the peer.
        """
        self._buffer += data

    def nextEvent(self) -> Message | _NeedData:
        """
        Parse the next message from the buffered bytes.

        @raise ProtocolError: The bytes break the protocol.
        """
        if self._error is not None:
            raise self._error
        if self._reader is None:
            return NEED_DATA
        try:
            result = self._reader(self._buffer)
        except ProtocolError as e:
            self._error = e
            self.state = HandshakeState.CLOSED
            raise
        if result is None:
            return NEED_DATA
        message, consumed = result
        del self._buffer[:consumed]
        self._expect(None)
        self._received(message)
        return message

    def takeTrailingData(self) -> bytes:
        """
        Return and forget every byte buffered but not parsed: after the
        handshake, the first bytes of the relayed stream.
        """
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def _expect(self, reader: Reader | None) -> None:
        self._reader = reader
        self.state = HandshakeState.RECEIVING if reader else HandshakeState.SENDING

    def _finish(self, established: bool) -> None:
        self._reader = None
        self.state = (
            HandshakeState.ESTABLISHED if established else HandshakeState.CLOSED
        )

    def _received(self, message: Message) -> None:
        raise NotImplementedError()


def _readFirstMessage(
    data: Buffer, socks4Commands: Collection[int] = SOCKS4_COMMANDS
) -> tuple[Message, int] | None:
    """
    Tell SOCKS4 from SOCKS5 by the first byte and read that version's first
    message.
    """
    if not data:
        return None
    if data[0] == SOCKS4_VERSION:
        return readSOCKS4Request(data, socks4Commands)
    if data[0] == SOCKS5_VERSION:
        return readSOCKS5Greeting(data)
    raise ProtocolError(f"not a SOCKS request: first byte {data[0]:#04x}")


#: What the server answers to each message it reads.
_ANSWERS: dict[type[Message], type[Message]] = {
    SOCKS4Request: SOCKS4Reply,
    SOCKS5Greeting: MethodSelection,
    UsernamePasswordRequest: UsernamePasswordStatus,
    SOCKS5Request: SOCKS5Reply,
}


_EVERY_COMMAND = frozenset(Command)


@functools.lru_cache(maxsize=16)
def _commandSets(
    commands: frozenset[Command],
) -> tuple[frozenset[Command], frozenset[Command]]:
    """
    The commands a server connection serves, and those of them SOCKS4 can
    carry: one pair for every connection of a server, not one per
    connection (each frozenset is hundreds of bytes, and a server holds
    thousands of sessions).
    """
    return commands, commands & SOCKS4_COMMANDS


class ServerConnection(_Connection):
    """
    The server's side of a SOCKS4, SOCKS4a or SOCKS5 handshake.

    Events: L{SOCKS4Request}; or L{SOCKS5Greeting}, then (after sending
    L{MethodSelection} of username/password) L{UsernamePasswordRequest}, then
    L{SOCKS5Request}.  After a L{MethodSelection} of GSSAPI nothing is read
    until the caller, which runs RFC 1961's exchange, calls
    L{gssapiEstablished}.  Replies: L{SOCKS4Reply} or L{SOCKS5Reply}; a
    successful BIND takes two.

    A successful RESOLVE or RESOLVE_PTR (Tor's extensions) takes one reply,
    after which the state is L{HandshakeState.CLOSED}: nothing is relayed.

    @ivar version: 4 or 5 once the first message is read, else C{None}.
    """

    def __init__(self, commands: Collection[Command] | None = None) -> None:
        """
        @param commands: The commands served; a request for another gets
            reply 0x07 (SOCKS5) or 91 (SOCKS4) as a L{ProtocolError}.  Every
            L{Command} when C{None}; SOCKS4 never carries UDP ASSOCIATE or
            RESOLVE_PTR.
        """
        self._commands, self._socks4Commands = _commandSets(
            _EVERY_COMMAND if commands is None else frozenset(commands)
        )
        super().__init__(self._readFirst)
        self.version: int | None = None
        self._command: Command | None = None
        self._repliesSent = 0
        self._answer: type[Message] | None = None
        self._gssapi = False

    def gssapiEstablished(self) -> None:
        """
        The GSSAPI method's exchange (RFC 1961), which the caller runs after
        sending L{MethodSelection} of L{AuthMethod.GSSAPI}, succeeded: read
        the request next.  (Under per-message protection the caller feeds
        L{receiveData} the unwrapped bytes.)

        @raise ValueError: If GSSAPI was not selected, or this was called
            already.
        """
        if not self._gssapi or self._reader is not None:
            raise ValueError("GSSAPI was not selected, or is already established")
        self._gssapi = False
        self._expect(self._readRequest)

    def _readFirst(self, data: Buffer) -> tuple[Message, int] | None:
        return _readFirstMessage(data, self._socks4Commands)

    def _readRequest(self, data: Buffer) -> tuple[Message, int] | None:
        return readSOCKS5Request(data, self._commands)

    def _received(self, message: Message) -> None:
        if isinstance(message, SOCKS4Request):
            self.version = SOCKS4_VERSION
            self._command = message.command
        elif isinstance(message, SOCKS5Greeting):
            self.version = SOCKS5_VERSION
        elif isinstance(message, SOCKS5Request):
            self._command = message.command
        self._answer = _ANSWERS[type(message)]

    def send(
        self,
        message: MethodSelection | UsernamePasswordStatus | SOCKS4Reply | SOCKS5Reply,
    ) -> bytes:
        """
        Encode C{message} and advance the handshake.

        @raise ValueError: This message cannot be sent now.
        """
        if self.state is not HandshakeState.SENDING or not isinstance(
            message, self._answer or ()
        ):
            raise ValueError(f"cannot send {message!r} in state {self.state}")
        if isinstance(message, MethodSelection):
            if message.method == AuthMethod.NO_AUTHENTICATION:
                self._expect(self._readRequest)
            elif message.method == AuthMethod.USERNAME_PASSWORD:
                self._expect(readUsernamePasswordRequest)
            elif message.method == AuthMethod.GSSAPI:
                # The RFC 1961 exchange is the caller's (the messages are
                # framed differently): nothing is parsed until it calls
                # gssapiEstablished.
                self._gssapi = True
                self._expect(None)
            elif message.method == AuthMethod.NO_ACCEPTABLE_METHODS:
                self._finish(established=False)
            else:
                raise ValueError(f"method {message.method:#04x} is not implemented")
        elif isinstance(message, UsernamePasswordStatus):
            if message.succeeded:
                self._expect(self._readRequest)
            else:
                self._finish(established=False)
        else:
            self._repliesSent += 1
            if not message.succeeded or self._command in LOOKUP_COMMANDS:
                self._finish(established=False)
            elif self._command is Command.BIND and self._repliesSent == 1:
                pass  # the second reply names the peer that connected
            else:
                self._finish(established=True)
        return message.toBytes()


class ClientConnection(_Connection):
    """
    The client's side of a SOCKS4, SOCKS4a or SOCKS5 handshake.

    Send L{SOCKS5Greeting}, then L{UsernamePasswordRequest} if the server
    selected it, then L{SOCKS5Request}; or send L{SOCKS4Request}.  Events are
    the server's answers; a successful BIND yields two replies.  A method
    selection naming a method that was not offered is a L{ProtocolError}.
    The reply to a RESOLVE or RESOLVE_PTR ends the handshake in
    L{HandshakeState.CLOSED}, successful or not: nothing follows it.
    """

    def __init__(self) -> None:
        super().__init__(None)
        self._offered: tuple[int, ...] = ()
        self._command: Command | None = None
        self._repliesReceived = 0
        self._next: tuple[type[Message], ...] = (SOCKS5Greeting, SOCKS4Request)

    def send(
        self,
        message: SOCKS5Greeting
        | UsernamePasswordRequest
        | SOCKS5Request
        | SOCKS4Request,
    ) -> bytes:
        """
        Encode C{message} and expect the server's answer to it.

        @raise ValueError: A field of C{message} cannot be encoded, or it
            cannot be sent now.  The state is unchanged then.
        """
        if self.state is not HandshakeState.SENDING or not isinstance(
            message, self._next
        ):
            raise ValueError(f"cannot send {message!r} in state {self.state}")
        data = message.toBytes()
        if isinstance(message, SOCKS5Greeting):
            self._offered = message.methods
            self._expect(readMethodSelection)
        elif isinstance(message, UsernamePasswordRequest):
            self._expect(readUsernamePasswordStatus)
        elif isinstance(message, SOCKS5Request):
            self._command = message.command
            self._expect(readSOCKS5Reply)
        else:
            self._command = message.command
            self._expect(readSOCKS4Reply)
        return data

    def _received(self, message: Message) -> None:
        self._next = (SOCKS5Request,)
        if isinstance(message, MethodSelection):
            if message.method == AuthMethod.USERNAME_PASSWORD:
                self._next = (UsernamePasswordRequest,)
            if message.method == AuthMethod.NO_ACCEPTABLE_METHODS:
                self._finish(established=False)
            elif message.method not in self._offered:
                error = ProtocolError(
                    f"server selected method {message.method:#04x}, "
                    "which was not offered"
                )
                self._error = error
                self.state = HandshakeState.CLOSED
                raise error
        elif isinstance(message, UsernamePasswordStatus):
            if not message.succeeded:
                self._finish(established=False)
        elif isinstance(message, SOCKS4Reply | SOCKS5Reply):
            self._repliesReceived += 1
            if not message.succeeded or self._command in LOOKUP_COMMANDS:
                self._finish(established=False)
            elif self._command is Command.BIND and self._repliesReceived == 1:
                self._expect(
                    readSOCKS4Reply
                    if isinstance(message, SOCKS4Reply)
                    else readSOCKS5Reply
                )
            else:
                self._finish(established=True)
