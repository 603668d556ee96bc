"""
Test vectors, written by hand as hex from the protocol texts, one field per
group of hex digits:

  - the SOCKS4 protocol document (VN CD DSTPORT DSTIP USERID NULL; replies
    VN=0, CD 90..93) and its SOCKS4a extension (DSTIP 0.0.0.x, x != 0,
    followed by a NUL-terminated host name after the user ID);
  - RFC 1928 (greeting, method selection, requests and replies with ATYP
    1, 3 and 4);
  - RFC 1929 (username/password request and status).

None of them was produced by calling the encoder under test.  Each names the
connection state in which it is read, so that the same table serves the
decoding, encoding and every-prefix tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from socks_twisted._wire import (
    Command,
    Message,
    MethodSelection,
    SOCKS4Reply,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
)

from ._helpers import (
    ConnectionFactory,
    clientAwaitingAuthenticationStatus,
    clientAwaitingMethodSelection,
    clientAwaitingSOCKS4Reply,
    clientAwaitingSOCKS5Reply,
    serverAwaitingAuthentication,
    serverAwaitingFirstMessage,
    serverAwaitingRequest,
)


@dataclass(frozen=True)
class Vector:
    """
    One message on the wire.

    @ivar name: What it is, for failure messages.
    @ivar wire: Its bytes.
    @ivar message: The message object they stand for.
    @ivar reader: Makes a connection in the state that reads it.
    @ivar encodes: Whether C{message.toBytes()} gives exactly C{wire}; false
        for inputs that are valid but that our encoder writes differently
        (for instance SOCKS4a with DSTIP 0.0.0.255: we always send 0.0.0.1).
    """

    name: str
    wire: bytes
    message: Message
    reader: ConnectionFactory
    encodes: bool = True


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


# SOCKS4 and SOCKS4a requests, read by a fresh server.

SOCKS4_CONNECT = Vector(
    "SOCKS4 CONNECT 127.0.0.1:80, user ID fred",
    #    VN CD DSTPORT DSTIP    USERID   NUL
    _h("04 01 0050    7f000001 66726564 00"),
    SOCKS4Request(Command.CONNECT, "127.0.0.1", 80, b"fred"),
    serverAwaitingFirstMessage,
)
SOCKS4_CONNECT_NO_USER = Vector(
    "SOCKS4 CONNECT 192.0.2.1:443, empty user ID",
    _h("04 01 01bb c0000201 00"),
    SOCKS4Request(Command.CONNECT, "192.0.2.1", 443, b""),
    serverAwaitingFirstMessage,
)
SOCKS4_BIND = Vector(
    "SOCKS4 BIND for 192.0.2.1:21, user ID fred",
    _h("04 02 0015 c0000201 66726564 00"),
    SOCKS4Request(Command.BIND, "192.0.2.1", 21, b"fred"),
    serverAwaitingFirstMessage,
)
SOCKS4A_CONNECT = Vector(
    "SOCKS4a CONNECT example.com:80, DSTIP 0.0.0.1, user ID fred",
    #    VN CD DSTPORT DSTIP    USERID   NUL HOSTNAME                 NUL
    _h("04 01 0050    00000001 66726564 00  6578616d706c652e636f6d 00"),
    SOCKS4Request(Command.CONNECT, "example.com", 80, b"fred"),
    serverAwaitingFirstMessage,
)
SOCKS4A_CONNECT_DSTIP_255 = Vector(
    "SOCKS4a CONNECT example.com:80, DSTIP 0.0.0.255, empty user ID",
    _h("04 01 0050 000000ff 00 6578616d706c652e636f6d 00"),
    SOCKS4Request(Command.CONNECT, "example.com", 80, b""),
    serverAwaitingFirstMessage,
    encodes=False,
)

# SOCKS4 replies, read by a client that sent a SOCKS4 request.

SOCKS4_REPLY_GRANTED = Vector(
    "SOCKS4 reply 90 (granted)",
    #    VN CD DSTPORT DSTIP
    _h("00 5a 0000    00000000"),
    SOCKS4Reply(90),
    clientAwaitingSOCKS4Reply,
)
SOCKS4_REPLY_GRANTED_ADDRESS = Vector(
    "SOCKS4 reply 90 (granted) naming 192.0.2.1:1080",
    _h("00 5a 0438 c0000201"),
    SOCKS4Reply(90, "192.0.2.1", 1080),
    clientAwaitingSOCKS4Reply,
)
SOCKS4_REPLY_REJECTED = Vector(
    "SOCKS4 reply 91 (rejected or failed)",
    _h("00 5b 0000 00000000"),
    SOCKS4Reply(91),
    clientAwaitingSOCKS4Reply,
)
SOCKS4_REPLY_VN4 = Vector(
    "SOCKS4 reply 90 with VN=4, as some servers send",
    _h("04 5a 0000 00000000"),
    SOCKS4Reply(90),
    clientAwaitingSOCKS4Reply,
    encodes=False,
)

# SOCKS5 greetings, read by a fresh server.

SOCKS5_GREETING = Vector(
    "SOCKS5 greeting offering methods 00 and 02",
    #    VER NMETHODS METHODS
    _h("05  02       00 02"),
    SOCKS5Greeting((0x00, 0x02)),
    serverAwaitingFirstMessage,
)
SOCKS5_GREETING_ONE = Vector(
    "SOCKS5 greeting offering method 00 only",
    _h("05 01 00"),
    SOCKS5Greeting((0x00,)),
    serverAwaitingFirstMessage,
)

# Method selections, read by a client that offered 00 and 02.

METHOD_SELECTION_NONE = Vector(
    "SOCKS5 method selection 00 (no authentication)",
    #    VER METHOD
    _h("05  00"),
    MethodSelection(0x00),
    clientAwaitingMethodSelection,
)
METHOD_SELECTION_PASSWORD = Vector(
    "SOCKS5 method selection 02 (username/password)",
    _h("05 02"),
    MethodSelection(0x02),
    clientAwaitingMethodSelection,
)
METHOD_SELECTION_UNACCEPTABLE = Vector(
    "SOCKS5 method selection FF (no acceptable methods)",
    _h("05 ff"),
    MethodSelection(0xFF),
    clientAwaitingMethodSelection,
)

# RFC 1929.

USERNAME_PASSWORD_REQUEST = Vector(
    "RFC 1929 request fred / secret",
    #    VER ULEN UNAME    PLEN PASSWD
    _h("01  04   66726564 06   736563726574"),
    UsernamePasswordRequest(b"fred", b"secret"),
    serverAwaitingAuthentication,
)
USERNAME_PASSWORD_REQUEST_EMPTY_PASSWORD = Vector(
    "RFC 1929 request fred with an empty password",
    _h("01 04 66726564 00"),
    UsernamePasswordRequest(b"fred", b""),
    serverAwaitingAuthentication,
)
USERNAME_PASSWORD_SUCCESS = Vector(
    "RFC 1929 status 00 (success)",
    #    VER STATUS
    _h("01  00"),
    UsernamePasswordStatus(0x00),
    clientAwaitingAuthenticationStatus,
)
USERNAME_PASSWORD_FAILURE = Vector(
    "RFC 1929 status 01 (failure)",
    _h("01 01"),
    UsernamePasswordStatus(0x01),
    clientAwaitingAuthenticationStatus,
)

# SOCKS5 requests, read by a server that selected no authentication.

SOCKS5_CONNECT_IPV4 = Vector(
    "SOCKS5 CONNECT 192.0.2.1:80 (ATYP 1)",
    #    VER CMD RSV ATYP DST.ADDR DST.PORT
    _h("05  01  00  01   c0000201 0050"),
    SOCKS5Request(Command.CONNECT, "192.0.2.1", 80),
    serverAwaitingRequest,
)
SOCKS5_CONNECT_DOMAIN = Vector(
    "SOCKS5 CONNECT example.com:80 (ATYP 3)",
    #    VER CMD RSV ATYP LEN NAME                   DST.PORT
    _h("05  01  00  03   0b  6578616d706c652e636f6d 0050"),
    SOCKS5Request(Command.CONNECT, "example.com", 80),
    serverAwaitingRequest,
)
SOCKS5_CONNECT_IPV6 = Vector(
    "SOCKS5 CONNECT [2001:db8::1]:80 (ATYP 4, all 16 bytes)",
    #    VER CMD RSV ATYP DST.ADDR                         DST.PORT
    _h("05  01  00  04   20010db8000000000000000000000001 0050"),
    SOCKS5Request(Command.CONNECT, "2001:db8::1", 80),
    serverAwaitingRequest,
)
SOCKS5_BIND = Vector(
    "SOCKS5 BIND for 192.0.2.1:21",
    _h("05 02 00 01 c0000201 0015"),
    SOCKS5Request(Command.BIND, "192.0.2.1", 21),
    serverAwaitingRequest,
)
SOCKS5_UDP_ASSOCIATE = Vector(
    "SOCKS5 UDP ASSOCIATE from an unknown address (0.0.0.0:0)",
    _h("05 03 00 01 00000000 0000"),
    SOCKS5Request(Command.UDP_ASSOCIATE, "0.0.0.0", 0),
    serverAwaitingRequest,
)
SOCKS5_UDP_ASSOCIATE_IPV6 = Vector(
    "SOCKS5 UDP ASSOCIATE from [2001:db8::1]:5353",
    _h("05 03 00 04 20010db8000000000000000000000001 14e9"),
    SOCKS5Request(Command.UDP_ASSOCIATE, "2001:db8::1", 5353),
    serverAwaitingRequest,
)

# SOCKS5 replies, read by a client that sent a CONNECT request.

SOCKS5_REPLY_IPV4 = Vector(
    "SOCKS5 reply succeeded, BND 192.0.2.1:1080",
    #    VER REP RSV ATYP BND.ADDR BND.PORT
    _h("05  00  00  01   c0000201 0438"),
    SOCKS5Reply(0x00, "192.0.2.1", 1080),
    clientAwaitingSOCKS5Reply,
)
SOCKS5_REPLY_IPV6 = Vector(
    "SOCKS5 reply succeeded, BND [2001:db8::1]:1080",
    _h("05 00 00 04 20010db8000000000000000000000001 0438"),
    SOCKS5Reply(0x00, "2001:db8::1", 1080),
    clientAwaitingSOCKS5Reply,
)
SOCKS5_REPLY_DOMAIN = Vector(
    "SOCKS5 reply succeeded, BND example.com:1080",
    _h("05 00 00 03 0b 6578616d706c652e636f6d 0438"),
    SOCKS5Reply(0x00, "example.com", 1080),
    clientAwaitingSOCKS5Reply,
)
SOCKS5_REPLY_FAILURES = tuple(
    Vector(
        f"SOCKS5 reply {code:02x} ({what})",
        _h(wire),
        SOCKS5Reply(code),
        clientAwaitingSOCKS5Reply,
    )
    for code, what, wire in [
        #      VER REP RSV ATYP BND.ADDR BND.PORT
        (0x01, "general SOCKS server failure", "05 01 00 01 00000000 0000"),
        (0x02, "connection not allowed by ruleset", "05 02 00 01 00000000 0000"),
        (0x03, "network unreachable", "05 03 00 01 00000000 0000"),
        (0x04, "host unreachable", "05 04 00 01 00000000 0000"),
        (0x05, "connection refused", "05 05 00 01 00000000 0000"),
        (0x06, "TTL expired", "05 06 00 01 00000000 0000"),
        (0x07, "command not supported", "05 07 00 01 00000000 0000"),
        (0x08, "address type not supported", "05 08 00 01 00000000 0000"),
    ]
)

ALL_VECTORS: tuple[Vector, ...] = (
    SOCKS4_CONNECT,
    SOCKS4_CONNECT_NO_USER,
    SOCKS4_BIND,
    SOCKS4A_CONNECT,
    SOCKS4A_CONNECT_DSTIP_255,
    SOCKS4_REPLY_GRANTED,
    SOCKS4_REPLY_GRANTED_ADDRESS,
    SOCKS4_REPLY_REJECTED,
    SOCKS4_REPLY_VN4,
    SOCKS5_GREETING,
    SOCKS5_GREETING_ONE,
    METHOD_SELECTION_NONE,
    METHOD_SELECTION_PASSWORD,
    METHOD_SELECTION_UNACCEPTABLE,
    USERNAME_PASSWORD_REQUEST,
    USERNAME_PASSWORD_REQUEST_EMPTY_PASSWORD,
    USERNAME_PASSWORD_SUCCESS,
    USERNAME_PASSWORD_FAILURE,
    SOCKS5_CONNECT_IPV4,
    SOCKS5_CONNECT_DOMAIN,
    SOCKS5_CONNECT_IPV6,
    SOCKS5_BIND,
    SOCKS5_UDP_ASSOCIATE,
    SOCKS5_UDP_ASSOCIATE_IPV6,
    SOCKS5_REPLY_IPV4,
    SOCKS5_REPLY_IPV6,
    SOCKS5_REPLY_DOMAIN,
    *SOCKS5_REPLY_FAILURES,
)
