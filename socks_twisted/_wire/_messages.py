"""
The SOCKS messages, each with its encoder (C{toBytes}) and its reader.

A reader takes the bytes received so far and returns C{(message, consumed)}
once a whole message is there, C{None} while any prefix of one is, and
raises L{ProtocolError} as soon as the bytes cannot start a valid message.
No reader ever needs more than a few hundred bytes to decide.
"""

import ipaddress
import struct
from collections.abc import Collection
from dataclasses import dataclass, field

from ._addresses import (
    addressTypeOf,
    decodeName,
    decodeSOCKS5Address,
    encodeName,
    encodeSOCKS5Address,
)
from ._constants import (
    MAX_SOCKS4_FIELD,
    SOCKS4_COMMANDS,
    SOCKS4_REPLY_VERSION,
    SOCKS4_VERSION,
    SOCKS5_VERSION,
    USERNAME_PASSWORD_FAILURE,
    USERNAME_PASSWORD_SUCCESS,
    USERNAME_PASSWORD_VERSION,
    AddressType,
    AuthMethod,
    Command,
    SOCKS4ReplyCode,
    SOCKS5ReplyCode,
)
from ._errors import ProtocolError

_SOCKS4_HEADER = struct.Struct("!BBH4s")
_ALL_COMMANDS = frozenset(Command)

Buffer = bytes | bytearray


def _checkPort(port: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")


def socks4Failure() -> bytes:
    """
    The SOCKS4 reply that refuses a request (CD 91).
    """
    return SOCKS4Reply(SOCKS4ReplyCode.REJECTED).toBytes()


#: The failure replies made so far, by code: at most one per byte value.
_SOCKS5_FAILURES: dict[int, bytes] = {}


def socks5Failure(code: int) -> bytes:
    """
    A SOCKS5 failure reply with C{code} and an all-zero IPv4 BND address.
    """
    # Kept once made: every request's reader hands the ones it may need to
    # the address decoder, and encoding them each time showed in profiles.
    reply = _SOCKS5_FAILURES.get(code)
    if reply is None:
        reply = _SOCKS5_FAILURES[code] = SOCKS5Reply(code).toBytes()
    return reply


@dataclass(frozen=True, slots=True)
class SOCKS4Request:
    """
    A SOCKS4 or SOCKS4a request.

    @ivar host: A dotted-quad IPv4 address (SOCKS4), or a name that the
        server resolves (SOCKS4a, DSTIP 0.0.0.x with x != 0).
    """

    command: Command
    host: str
    port: int
    userID: bytes = b""

    @property
    def isSOCKS4a(self) -> bool:
        """
        Whether the server resolves the name (SOCKS4a).
        """
        return addressTypeOf(self.host) is not AddressType.IPV4

    def toBytes(self) -> bytes:
        """
        Encode; a name goes out as SOCKS4a with DSTIP 0.0.0.1.

        @raise ValueError: A field cannot be encoded.
        """
        if b"\x00" in self.userID or len(self.userID) > MAX_SOCKS4_FIELD:
            raise ValueError("SOCKS4 user ID contains NUL or exceeds 255 bytes")
        _checkPort(self.port)
        if self.isSOCKS4a:
            name = encodeName(self.host)
            address = b"\x00\x00\x00\x01"
            suffix = name + b"\x00"
        else:
            address = ipaddress.IPv4Address(self.host).packed
            if address[:3] == b"\x00\x00\x00" and address[3] != 0:
                raise ValueError(
                    f"{self.host} cannot be sent: SOCKS4a reserves 0.0.0.1-0.0.0.255"
                )
            suffix = b""
        return (
            _SOCKS4_HEADER.pack(SOCKS4_VERSION, self.command, self.port, address)
            + self.userID
            + b"\x00"
            + suffix
        )


def _readNulTerminated(
    data: Buffer, offset: int, what: str
) -> tuple[bytes, int] | None:
    """
    Read a NUL-terminated SOCKS4 field of at most 255 bytes.
    """
    limit = offset + MAX_SOCKS4_FIELD + 1
    end = data.find(b"\x00", offset, limit)
    if end == -1:
        if len(data) >= limit:
            raise ProtocolError(
                f"SOCKS4 {what} longer than {MAX_SOCKS4_FIELD} bytes", socks4Failure()
            )
        return None
    return bytes(data[offset:end]), end + 1


def readSOCKS4Request(
    data: Buffer, commands: Collection[int] = SOCKS4_COMMANDS
) -> tuple[SOCKS4Request, int] | None:
    """
    Read a SOCKS4 or SOCKS4a request.

    @param commands: The commands served; any other gets reply 91 as soon as
        CD arrives.  By default CONNECT, BIND and Tor's RESOLVE (which Tor
        takes over SOCKS4 and SOCKS4a alike).
    """
    if len(data) < _SOCKS4_HEADER.size:
        if data and data[0] != SOCKS4_VERSION:
            raise ProtocolError(f"not SOCKS4: version {data[0]}")
        if len(data) >= 2 and data[1] not in commands:
            raise ProtocolError(f"unknown SOCKS4 command {data[1]}", socks4Failure())
        return None
    version, command, port, address = _SOCKS4_HEADER.unpack_from(data)
    if version != SOCKS4_VERSION:
        raise ProtocolError(f"not SOCKS4: version {version}")
    if command not in commands:
        raise ProtocolError(f"unknown SOCKS4 command {command}", socks4Failure())
    userField = _readNulTerminated(data, _SOCKS4_HEADER.size, "user ID")
    if userField is None:
        return None
    userID, end = userField
    if address[:3] == b"\x00\x00\x00" and address[3] != 0:
        nameField = _readNulTerminated(data, end, "hostname")
        if nameField is None:
            return None
        rawName, end = nameField
        host = decodeName(rawName, socks4Failure())
    else:
        host = str(ipaddress.IPv4Address(address))
    return SOCKS4Request(Command(command), host, port, userID), end


@dataclass(frozen=True, slots=True)
class SOCKS4Reply:
    """
    A SOCKS4 reply.  VN is always 0.
    """

    code: int
    host: str = "0.0.0.0"
    port: int = 0

    def toBytes(self) -> bytes:
        """
        Encode.

        @raise ValueError: The port is out of range or the host is not IPv4.
        """
        _checkPort(self.port)
        return _SOCKS4_HEADER.pack(
            SOCKS4_REPLY_VERSION,
            self.code,
            self.port,
            ipaddress.IPv4Address(self.host).packed,
        )

    @property
    def succeeded(self) -> bool:
        """
        Whether the server granted the request (CD 90).
        """
        return self.code == SOCKS4ReplyCode.GRANTED


def readSOCKS4Reply(data: Buffer) -> tuple[SOCKS4Reply, int] | None:
    """
    Read a SOCKS4 reply.  Some servers answer VN=4 instead of 0; that is
    accepted, anything else is not.
    """
    if data and data[0] not in (SOCKS4_REPLY_VERSION, SOCKS4_VERSION):
        raise ProtocolError(f"SOCKS4 reply with version {data[0]}")
    if len(data) < _SOCKS4_HEADER.size:
        return None
    _, code, port, address = _SOCKS4_HEADER.unpack_from(data)
    host = str(ipaddress.IPv4Address(address))
    return SOCKS4Reply(code, host, port), _SOCKS4_HEADER.size


@dataclass(frozen=True, slots=True)
class SOCKS5Greeting:
    """
    The client's first SOCKS5 message: the methods it offers, in its order.
    """

    methods: tuple[int, ...]

    def toBytes(self) -> bytes:
        """
        Encode.

        @raise ValueError: No method, or more than 255.
        """
        if not 1 <= len(self.methods) <= 255:
            raise ValueError("a SOCKS5 greeting offers between 1 and 255 methods")
        return bytes([SOCKS5_VERSION, len(self.methods), *self.methods])


def readSOCKS5Greeting(data: Buffer) -> tuple[SOCKS5Greeting, int] | None:
    """
    Read a SOCKS5 greeting.  NMETHODS=0 gets C{05 FF}.
    """
    if data and data[0] != SOCKS5_VERSION:
        raise ProtocolError(f"not SOCKS5: version {data[0]}")
    if len(data) < 2:
        return None
    count = data[1]
    if count == 0:
        raise ProtocolError(
            "SOCKS5 greeting offers no method",
            MethodSelection(AuthMethod.NO_ACCEPTABLE_METHODS).toBytes(),
        )
    if len(data) < 2 + count:
        return None
    return SOCKS5Greeting(tuple(data[2 : 2 + count])), 2 + count


@dataclass(frozen=True, slots=True)
class MethodSelection:
    """
    The server's choice among the offered methods (C{0xFF}: none fits).
    """

    method: int

    def toBytes(self) -> bytes:
        """
        Encode.
        """
        return bytes([SOCKS5_VERSION, self.method])


def readMethodSelection(data: Buffer) -> tuple[MethodSelection, int] | None:
    """
    Read the server's method selection.
    """
    if data and data[0] != SOCKS5_VERSION:
        raise ProtocolError(f"method selection with version {data[0]}")
    if len(data) < 2:
        return None
    return MethodSelection(data[1]), 2


@dataclass(frozen=True, slots=True)
class UsernamePasswordRequest:
    """
    The RFC 1929 sub-negotiation request.  The password never shows in
    C{repr}.
    """

    username: bytes
    password: bytes = field(repr=False)

    def toBytes(self) -> bytes:
        """
        Encode.

        @raise ValueError: A field is empty (username) or longer than 255.
        """
        if not 1 <= len(self.username) <= 255 or len(self.password) > 255:
            raise ValueError("RFC 1929 username must be 1-255 bytes, password 0-255")
        return (
            bytes([USERNAME_PASSWORD_VERSION, len(self.username)])
            + self.username
            + bytes([len(self.password)])
            + self.password
        )


_AUTH_FAILED = bytes([USERNAME_PASSWORD_VERSION, USERNAME_PASSWORD_FAILURE])


def readUsernamePasswordRequest(
    data: Buffer,
) -> tuple[UsernamePasswordRequest, int] | None:
    """
    Read an RFC 1929 request.  A bad version or an empty username gets the
    failure status.  An empty password is let through to the credential
    checker, as Dante does.
    """
    if data and data[0] != USERNAME_PASSWORD_VERSION:
        raise ProtocolError(
            f"RFC 1929 sub-negotiation with version {data[0]}", _AUTH_FAILED
        )
    if len(data) < 2:
        return None
    userLength = data[1]
    if userLength == 0:
        raise ProtocolError("RFC 1929 request with an empty username", _AUTH_FAILED)
    passwordLengthAt = 2 + userLength
    if len(data) < passwordLengthAt + 1:
        return None
    end = passwordLengthAt + 1 + data[passwordLengthAt]
    if len(data) < end:
        return None
    username = bytes(data[2:passwordLengthAt])
    password = bytes(data[passwordLengthAt + 1 : end])
    return UsernamePasswordRequest(username, password), end


@dataclass(frozen=True, slots=True)
class UsernamePasswordStatus:
    """
    The RFC 1929 status: 0 is success, anything else failure.
    """

    status: int

    @property
    def succeeded(self) -> bool:
        """
        Whether the server accepted the credentials.
        """
        return self.status == USERNAME_PASSWORD_SUCCESS

    def toBytes(self) -> bytes:
        """
        Encode.
        """
        return bytes([USERNAME_PASSWORD_VERSION, self.status])


def readUsernamePasswordStatus(
    data: Buffer,
) -> tuple[UsernamePasswordStatus, int] | None:
    """
    Read an RFC 1929 status.
    """
    if data and data[0] != USERNAME_PASSWORD_VERSION:
        raise ProtocolError(f"RFC 1929 status with version {data[0]}")
    if len(data) < 2:
        return None
    return UsernamePasswordStatus(data[1]), 2


@dataclass(frozen=True, slots=True)
class SOCKS5Request:
    """
    A SOCKS5 request.  C{host} is an IP literal or a name; which decides ATYP.
    """

    command: Command
    host: str
    port: int

    def toBytes(self) -> bytes:
        """
        Encode.

        @raise ValueError: The host or port cannot be encoded.
        """
        return bytes([SOCKS5_VERSION, self.command, 0]) + encodeSOCKS5Address(
            self.host, self.port
        )


def readSOCKS5Request(
    data: Buffer, commands: Collection[int] = _ALL_COMMANDS
) -> tuple[SOCKS5Request, int] | None:
    """
    Read a SOCKS5 request.  A bad version or RSV gets reply 0x01, a command
    not among C{commands} (by default every L{Command}) 0x07, an unknown
    ATYP 0x08.
    """
    if data and data[0] != SOCKS5_VERSION:
        raise ProtocolError(
            f"SOCKS5 request with version {data[0]}",
            socks5Failure(SOCKS5ReplyCode.GENERAL_FAILURE),
        )
    if len(data) >= 2 and data[1] not in commands:
        raise ProtocolError(
            f"unknown SOCKS5 command {data[1]:#04x}",
            socks5Failure(SOCKS5ReplyCode.COMMAND_NOT_SUPPORTED),
        )
    if len(data) >= 3 and data[2] != 0:
        raise ProtocolError(
            f"SOCKS5 request with RSV {data[2]:#04x}",
            socks5Failure(SOCKS5ReplyCode.GENERAL_FAILURE),
        )
    address = decodeSOCKS5Address(
        data,
        3,
        socks5Failure(SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED),
        socks5Failure(SOCKS5ReplyCode.GENERAL_FAILURE),
    )
    if address is None:
        return None
    host, port, end = address
    return SOCKS5Request(Command(data[1]), host, port), end


@dataclass(frozen=True, slots=True)
class SOCKS5Reply:
    """
    A SOCKS5 reply.  C{host} and C{port} are BND.ADDR and BND.PORT.
    """

    code: int
    host: str = "0.0.0.0"
    port: int = 0

    @property
    def succeeded(self) -> bool:
        """
        Whether the reply reports success.
        """
        return self.code == SOCKS5ReplyCode.SUCCEEDED

    def toBytes(self) -> bytes:
        """
        Encode.
        """
        return bytes([SOCKS5_VERSION, self.code, 0]) + encodeSOCKS5Address(
            self.host, self.port
        )


def readSOCKS5Reply(data: Buffer) -> tuple[SOCKS5Reply, int] | None:
    """
    Read a SOCKS5 reply.  RSV is not checked (servers are not consistent).
    """
    if data and data[0] != SOCKS5_VERSION:
        raise ProtocolError(f"SOCKS5 reply with version {data[0]}")
    if len(data) < 3:
        return None
    address = decodeSOCKS5Address(data, 3, None, None)
    if address is None:
        return None
    host, port, end = address
    return SOCKS5Reply(data[1], host, port), end
