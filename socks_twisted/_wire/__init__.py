"""
The SOCKS wire protocol, sans I/O: messages, readers, encoders and the
connection objects that track one handshake.  Nothing here imports Twisted.
"""

from ._addresses import (
    addressTypeOf,
    encodeName,
    encodeSOCKS5Address,
    normalizeIP,
    parseIP,
)
from ._connection import (
    NEED_DATA,
    ClientConnection,
    HandshakeState,
    Message,
    ServerConnection,
)
from ._constants import (
    LOOKUP_COMMANDS,
    MAX_SOCKS4_FIELD,
    AddressType,
    AuthMethod,
    Command,
    SOCKS4ReplyCode,
    SOCKS5ReplyCode,
)
from ._errors import ProtocolError
from ._gssapi import (
    ABORT_MESSAGE,
    GSSAPI_VERSION,
    MAX_TOKEN_LENGTH,
    GSSAPIMessage,
    GSSAPIMessageReader,
    MessageType,
    ProtectionLevel,
    contextMessage,
    decodeProtectionLevel,
    encapsulatedMessage,
    encodeProtectionLevel,
    isUnprotectedProtectionToken,
    protectionMessage,
    readEncapsulatedDatagram,
    readGSSAPIMessage,
)
from ._messages import (
    MethodSelection,
    SOCKS4Reply,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
)
from ._udp import UDPDatagram, readUDPDatagram

__all__ = [
    "ABORT_MESSAGE",
    "GSSAPI_VERSION",
    "LOOKUP_COMMANDS",
    "MAX_SOCKS4_FIELD",
    "MAX_TOKEN_LENGTH",
    "NEED_DATA",
    "AddressType",
    "AuthMethod",
    "ClientConnection",
    "Command",
    "GSSAPIMessage",
    "GSSAPIMessageReader",
    "HandshakeState",
    "Message",
    "MessageType",
    "MethodSelection",
    "ProtectionLevel",
    "ProtocolError",
    "SOCKS4Reply",
    "SOCKS4ReplyCode",
    "SOCKS4Request",
    "SOCKS5Greeting",
    "SOCKS5Reply",
    "SOCKS5ReplyCode",
    "SOCKS5Request",
    "ServerConnection",
    "UDPDatagram",
    "UsernamePasswordRequest",
    "UsernamePasswordStatus",
    "addressTypeOf",
    "contextMessage",
    "decodeProtectionLevel",
    "encapsulatedMessage",
    "encodeName",
    "encodeProtectionLevel",
    "encodeSOCKS5Address",
    "isUnprotectedProtectionToken",
    "normalizeIP",
    "parseIP",
    "protectionMessage",
    "readEncapsulatedDatagram",
    "readGSSAPIMessage",
    "readUDPDatagram",
]
