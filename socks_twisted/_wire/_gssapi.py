"""
The GSS-API authentication method of SOCKS5 (method 0x01), sans I/O: the
framed messages of RFC 1961 and the protection-level octet.

Message layouts
===============

Verified against the text of RFC 1961 (sections 3.3-3.8, 4.3-4.4 and 5) and
against curl's client, C{lib/socks_gssapi.c} (curl/curl at commit
5c61e168698a, August 2026), which is what C{curl --socks5-gssapi} and
C{--socks5-gssapi-nec} send and accept.

Every message but the abort is framed the same way::

    +------+------+------+.......................+
    | VER  | MTYP | LEN  |        TOKEN          |
    +------+------+------+.......................+
    | 0x01 |  1   |  2   | up to 2^16 - 1 octets |
    +------+------+------+.......................+

VER is 1, the version of the SOCKS/GSS-API protocol; LEN is the length of
TOKEN in network byte order.  MTYP is:

  - C{0x01}, a security context token: the output of
    C{gss_init_sec_context} (client to server) or C{gss_accept_sec_context}
    (server to client), RFC 1961 sections 3.3-3.7;
  - C{0x02}, the protection-level subnegotiation, RFC 1961 section 4.3:
    TOKEN is one octet, the protection level, wrapped by C{gss_wrap} with
    C{conf_req} false; the server answers with the same message type and
    its choice, wrapped the same way (section 4.4);
  - C{0x03}, encapsulated user data, RFC 1961 section 5: TOKEN is the
    output of C{gss_wrap}, with C{conf_req} false at protection level 1 and
    true at level 2;
  - C{0xFF}, the abort (RFC 1961 section 3.8), which is two octets only,
    C{01 FF}, with neither LEN nor TOKEN: the server's refusal.

The protection levels (RFC 1961 section 4.3) are 1, integrity; 2,
confidentiality; 3, per-message ("selective") protection.  curl also sends
and accepts 0, "no data protection", which the RFC does not define
(L{ProtectionLevel.NONE}): curl asks for 2 when the context has
C{GSS_C_CONF_FLAG}, else 1 when it has C{GSS_C_INTEG_FLAG}, else 0.  curl
implements no encapsulation: if the server answers anything but 0, curl
fails the transfer ("SOCKS5 GSS-API protection not yet implemented"); a
server that wants curl as a client must be able to answer 0.

The NEC variant (C{curl --socks5-gssapi-nec}, after the NEC reference
implementation): the MTYP 2 messages carry the protection-level octet
unwrapped, C{01 02 00 01 LL}, and curl expects the server's answer
unwrapped too.  A C{gss_wrap} token is never one octet long (a Kerberos
wrap token has a 16-octet header at least), so a server tells the variants
apart by the length of the token: L{isUnprotectedProtectionToken}.

curl also refuses an answer with LEN 0 (both to a context token and to a
protection-level message), and never sends one; this reader refuses them
as well (L{ProtocolError}): no GSS-API token is empty.

UDP datagrams
-------------

Under integrity or confidentiality, a UDP datagram of the association is
protected whole: RFC 1928 section 7 puts "any authentication-method-dependent
encapsulation" around the UDP request header and its data, and RFC 1961
section 5 applies C{gss_wrap} to UDP as to TCP.  Each datagram is one MTYP 3
message whose token is the C{gss_wrap} output of the whole SOCKS UDP request
(RSV, FRAG, ATYP, address, port, data), and nothing else
(L{readEncapsulatedDatagram}).

LEN and "a token over 64 KiB"
-----------------------------

LEN is two octets, so no message can carry more than 65535 octets, one
less than 64 KiB: a token over 64 KiB cannot be framed at all.  The encoder
refuses one (C{ValueError}: it is the caller's bug, and a wrapping layer
must cut the data so that each C{gss_wrap} output fits, see
C{gss_wrap_size_limit}); the reader takes a lower limit if asked
(C{maxTokenLength}) and refuses a header announcing more as soon as its
four octets are in, without waiting for the token.
"""

import struct
from collections.abc import Collection
from dataclasses import dataclass
from enum import IntEnum

from ._errors import ProtocolError

#: The VER octet of every RFC 1961 message.
GSSAPI_VERSION = 0x01

#: The longest token a message can carry: LEN is two octets.
MAX_TOKEN_LENGTH = 0xFFFF

_HEADER = struct.Struct("!BBH")


class MessageType(IntEnum):
    """
    The MTYP octet of an RFC 1961 message.
    """

    #: A security context token (RFC 1961 sections 3.3-3.7).
    CONTEXT = 0x01
    #: The protection-level subnegotiation (RFC 1961 section 4.3).
    PROTECTION = 0x02
    #: Encapsulated user data (RFC 1961 section 5).
    ENCAPSULATED = 0x03
    #: The server's abort (RFC 1961 section 3.8), two octets only.
    ABORT = 0xFF


class ProtectionLevel(IntEnum):
    """
    The protection-level octet of the subnegotiation (RFC 1961 section 4.3).
    """

    #: No per-message protection: not in RFC 1961, but what curl asks for
    #: when the context offers neither integrity nor confidentiality, and
    #: the only answer under which curl goes on (it implements no
    #: encapsulation).  Dante calls it "clear".
    NONE = 0x00
    #: Required per-message integrity: C{gss_wrap} with C{conf_req} false.
    INTEGRITY = 0x01
    #: Required per-message integrity and confidentiality: C{conf_req} true.
    CONFIDENTIALITY = 0x02
    #: Selective per-message integrity or confidentiality, by local
    #: configuration of each peer.
    SELECTIVE = 0x03


#: The two octets of the abort message.
ABORT_MESSAGE = bytes([GSSAPI_VERSION, MessageType.ABORT])

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class GSSAPIMessage:
    """
    One RFC 1961 message.

    @ivar type: Its MTYP.
    @ivar token: Its TOKEN: 1 to L{MAX_TOKEN_LENGTH} octets, or none for an
        abort.
    """

    type: MessageType
    token: bytes = b""

    def __post_init__(self) -> None:
        if self.type is MessageType.ABORT:
            if self.token:
                raise ValueError("an abort message carries no token")
        elif not 0 < len(self.token) <= MAX_TOKEN_LENGTH:
            raise ValueError(
                f"a token must be 1 to {MAX_TOKEN_LENGTH} octets, not {len(self.token)}"
            )

    def toBytes(self) -> bytes:
        """
        The message as it goes on the wire.
        """
        if self.type is MessageType.ABORT:
            return ABORT_MESSAGE
        return _HEADER.pack(GSSAPI_VERSION, self.type, len(self.token)) + self.token


def contextMessage(token: bytes) -> bytes:
    """
    Frame a security context token (MTYP 1).
    """
    return GSSAPIMessage(MessageType.CONTEXT, token).toBytes()


def protectionMessage(token: bytes) -> bytes:
    """
    Frame a protection-level token (MTYP 2): the wrapped octet, or for the
    NEC variant the bare L{encodeProtectionLevel} octet.
    """
    return GSSAPIMessage(MessageType.PROTECTION, token).toBytes()


def encapsulatedMessage(token: bytes) -> bytes:
    """
    Frame a C{gss_wrap} output carrying user data (MTYP 3).
    """
    return GSSAPIMessage(MessageType.ENCAPSULATED, token).toBytes()


def encodeProtectionLevel(level: ProtectionLevel) -> bytes:
    """
    The one octet that says C{level}, before it is wrapped.
    """
    return bytes([ProtectionLevel(level)])


def decodeProtectionLevel(octets: Buffer) -> ProtectionLevel:
    """
    Read the protection-level octet (unwrapped, or as the NEC variant sends
    it).

    @raise ProtocolError: If C{octets} is not exactly one octet, or names no
        protection level.
    """
    octets = bytes(octets)
    if len(octets) != 1:
        raise ProtocolError(f"GSSAPI protection level of {len(octets)} octets, not 1")
    try:
        return ProtectionLevel(octets[0])
    except ValueError:
        raise ProtocolError(f"unknown GSSAPI protection level {octets[0]}") from None


def isUnprotectedProtectionToken(token: Buffer) -> bool:
    """
    Whether an MTYP 2 token is the bare protection-level octet of the NEC
    variant (C{curl --socks5-gssapi-nec}) rather than a C{gss_wrap} output,
    which is never one octet long.
    """
    return len(token) == 1


def readGSSAPIMessage(
    data: Buffer,
    expected: Collection[MessageType] = frozenset(MessageType),
    maxTokenLength: int = MAX_TOKEN_LENGTH,
) -> tuple[GSSAPIMessage, int] | None:
    """
    Read one RFC 1961 message from the start of C{data}.

    @param data: The bytes received so far.
    @param expected: The message types acceptable at this point of the
        exchange; any other, known or not, is an error.
    @param maxTokenLength: The longest acceptable token, at most
        L{MAX_TOKEN_LENGTH}.

    @return: C{(message, consumed)} once a whole message is there, C{None}
        while C{data} is a prefix of an acceptable one.

    @raise ProtocolError: As soon as the bytes cannot start an acceptable
        message: a VER other than 1, an MTYP not in C{expected}, a LEN of 0
        or over C{maxTokenLength}.  The error's C{reply} is C{None}: RFC
        1961 has no message for bad framing (the abort is a refusal), so
        the connection is just closed.
    """
    if not 0 < maxTokenLength <= MAX_TOKEN_LENGTH:
        raise ValueError(f"maxTokenLength {maxTokenLength} out of range")
    if not data:
        return None
    if data[0] != GSSAPI_VERSION:
        raise ProtocolError(f"GSSAPI message version {data[0]}, not 1")
    if len(data) < 2:
        return None
    try:
        messageType = MessageType(data[1])
    except ValueError:
        raise ProtocolError(f"unknown GSSAPI message type {data[1]}") from None
    if messageType not in expected:
        raise ProtocolError(
            f"unexpected GSSAPI message type {messageType.name}"
            f" ({int(messageType)}) here"
        )
    if messageType is MessageType.ABORT:
        return GSSAPIMessage(MessageType.ABORT), 2
    if len(data) < _HEADER.size:
        return None
    (length,) = struct.unpack_from("!H", data, 2)
    if length == 0:
        raise ProtocolError(f"empty GSSAPI {messageType.name} token")
    if length > maxTokenLength:
        raise ProtocolError(
            f"GSSAPI {messageType.name} token of {length} octets,"
            f" over the limit of {maxTokenLength}"
        )
    end = _HEADER.size + length
    if len(data) < end:
        return None
    return GSSAPIMessage(messageType, bytes(data[_HEADER.size : end])), end


class GSSAPIMessageReader:
    """
    An incremental reader of RFC 1961 messages: bytes in, in whatever
    chunks they arrive; whole messages out.

    Once it has raised a L{ProtocolError} it raises the same one on every
    later call to L{nextMessage}.
    """

    def __init__(self, maxTokenLength: int = MAX_TOKEN_LENGTH) -> None:
        """
        @param maxTokenLength: The longest token accepted, at most
            L{MAX_TOKEN_LENGTH}.
        """
        if not 0 < maxTokenLength <= MAX_TOKEN_LENGTH:
            raise ValueError(f"maxTokenLength {maxTokenLength} out of range")
        self._buffer = bytearray()
        self._maxTokenLength = maxTokenLength
        self._error: ProtocolError | None = None

    def receiveData(self, data: Buffer) -> None:
        """
        Add bytes received from the peer.
        """
        self._buffer += data

    def nextMessage(
        self, expected: Collection[MessageType] = frozenset(MessageType)
    ) -> GSSAPIMessage | None:
        """
        The next whole message, or C{None} until it has arrived.

        @param expected: The message types acceptable now (see
            L{readGSSAPIMessage}).

        @raise ProtocolError: If the bytes cannot start such a message.
        """
        if self._error is not None:
            raise self._error
        try:
            result = readGSSAPIMessage(self._buffer, expected, self._maxTokenLength)
        except ProtocolError as e:
            self._error = e
            raise
        if result is None:
            return None
        message, consumed = result
        del self._buffer[:consumed]
        return message

    def unconsumed(self) -> bytes:
        """
        The bytes received but not yet read as a message.
        """
        return bytes(self._buffer)


_DATAGRAM_TYPES = frozenset({MessageType.ENCAPSULATED})


def readEncapsulatedDatagram(datagram: Buffer) -> bytes:
    """
    The token of a UDP datagram under GSS-API protection: one whole MTYP 3
    message, with nothing after it.

    @raise ProtocolError: If the datagram is anything else.
    """
    result = readGSSAPIMessage(datagram, _DATAGRAM_TYPES)
    if result is None:
        raise ProtocolError("truncated GSSAPI message in a datagram")
    message, consumed = result
    if consumed != len(datagram):
        raise ProtocolError(
            f"{len(datagram) - consumed} octets after the GSSAPI message in a datagram"
        )
    return message.token
