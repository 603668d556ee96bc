"""
Host strings to and from their SOCKS encodings.

A host is a C{str} everywhere above the wire: a dotted-quad IPv4 address, a
compressed IPv6 address, or a domain name.  Which of the three it is decides
the SOCKS5 ATYP.
"""

import ipaddress
import socket
import struct
from functools import lru_cache

import idna

from ._constants import AddressType
from ._errors import ProtocolError

_PORT = struct.Struct("!H")

#: How many distinct host strings the parse caches below remember.  A
#: session's request, reply, checks and log lines parse the same few strings
#: (its client's, its target's, the server's own addresses) about ten times;
#: a bounded cache keeps a flood of distinct names from growing it.
_CACHED_HOSTS = 4096


@lru_cache(maxsize=_CACHED_HOSTS)
def parseIP(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    The IP address C{host} spells (an IPv6 scope, C{%lo}, included), or
    C{None} when it is not an IP literal: a name.

    Cached: C{ipaddress} parsing is pure Python and was several per cent of
    the server's time per connection, and its addresses are immutable, so
    one parse can be shared.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def addressTypeOf(host: str) -> AddressType:
    """
    Tell how C{host} goes on the wire: as an IPv4 or IPv6 literal, or as a
    name.
    """
    address = parseIP(host)
    if address is None:
        return AddressType.DOMAIN
    return AddressType.IPV4 if address.version == 4 else AddressType.IPV6


@lru_cache(maxsize=_CACHED_HOSTS)
def normalizeIP(host: str) -> str:
    """
    The canonical text of an IP literal, without an IPv6 scope (C{%lo}), so
    that addresses from sockets and from requests compare equal.

    @raise ValueError: C{host} is not an IP literal.
    """
    return str(ipaddress.ip_address(host.split("%", 1)[0]))


def encodeName(host: str) -> bytes:
    """
    Encode a domain name for a SOCKS request: ASCII names as they are, others
    IDNA-encoded (UTS 46 mapping, as browsers do).

    @raise ValueError: The name cannot be encoded, is empty, or its encoding
        is longer than the 255 bytes a SOCKS request can carry.
    """
    try:
        encoded = host.encode("ascii")
    except UnicodeEncodeError:
        try:
            encoded = idna.encode(host, uts46=True)
        except idna.IDNAError as e:
            raise ValueError(f"host name {host!r} cannot be IDNA-encoded: {e}") from e
    if not encoded:
        raise ValueError("empty host name")
    if b"\x00" in encoded:
        raise ValueError("host name contains NUL")
    if len(encoded) > 255:
        raise ValueError(
            f"host name is {len(encoded)} bytes long; SOCKS allows at most 255"
        )
    return encoded


def decodeName(raw: bytes, reply: bytes | None) -> str:
    """
    Decode a domain name received on the wire.

    Names are ASCII (IDNA A-labels) in practice; some clients send UTF-8, which
    is accepted too.  Anything else is a protocol error carrying C{reply}.
    """
    if not raw:
        raise ProtocolError("empty host name", reply)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("host name is neither ASCII nor UTF-8", reply) from None


def encodeSOCKS5Address(host: str, port: int) -> bytes:
    """
    Encode ATYP, DST.ADDR / BND.ADDR and the port of a SOCKS5 request, reply
    or UDP header.  IP literals always take all 4 or 16 bytes.

    @raise ValueError: C{port} is out of range or C{host} cannot be encoded.
    """
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    address = parseIP(host)
    if address is None:
        name = encodeName(host)
        body = bytes([AddressType.DOMAIN, len(name)]) + name
    elif address.version == 4:
        body = bytes([AddressType.IPV4]) + address.packed
    else:
        body = bytes([AddressType.IPV6]) + address.packed
    return body + _PORT.pack(port)


def decodeSOCKS5Address(
    data: bytes | bytearray,
    offset: int,
    badTypeReply: bytes | None,
    malformedReply: bytes | None,
) -> tuple[str, int, int] | None:
    """
    Decode ATYP, an address and a port starting at C{data[offset]}.

    @return: C{(host, port, end)} where C{end} is the offset just past the
        port, or C{None} when more bytes are needed.
    @raise ProtocolError: Unknown ATYP (carrying C{badTypeReply}) or a
        malformed name (carrying C{malformedReply}).
    """
    if len(data) < offset + 1:
        return None
    atyp = data[offset]
    if atyp == AddressType.IPV4:
        end = offset + 1 + 4
        if len(data) < end + 2:
            return None
        # inet_ntoa writes the dotted quad just as ipaddress does, in C.
        host = socket.inet_ntoa(bytes(data[offset + 1 : end]))
    elif atyp == AddressType.IPV6:
        end = offset + 1 + 16
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(bytes(data[offset + 1 : end])))
    elif atyp == AddressType.DOMAIN:
        if len(data) < offset + 2:
            return None
        length = data[offset + 1]
        if length == 0:
            raise ProtocolError("zero-length domain name", malformedReply)
        end = offset + 2 + length
        if len(data) < end + 2:
            return None
        host = decodeName(bytes(data[offset + 2 : end]), malformedReply)
    else:
        raise ProtocolError(f"unsupported address type {atyp:#04x}", badTypeReply)
    (port,) = _PORT.unpack_from(data, end)
    return host, port, end + 2
