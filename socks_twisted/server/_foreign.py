"""
Other protocols sent to the SOCKS port by mistake: a browser or a tool told
to use the proxy as an HTTP proxy, or a TLS client.  They get a clear answer
instead of a silent close.
"""

from enum import Enum

#: The methods that mark a first line as HTTP (RFC 9110 and WebDAV's common
#: ones), each with the space that follows it.
_HTTP_METHODS = tuple(
    method + b" "
    for method in (
        b"GET",
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"CONNECT",
        b"OPTIONS",
        b"TRACE",
        b"PATCH",
        b"PROPFIND",
    )
)

#: The most bytes looked at to decide.
LONGEST_PREFIX = max(len(m) for m in _HTTP_METHODS)

#: What an HTTP client is told (Tor answers the same way).
HTTP_ANSWER = (
    b"HTTP/1.0 501 Not Implemented\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"This is a SOCKS proxy, not an HTTP proxy: "
    b"configure it as a SOCKS4 or SOCKS5 proxy.\n"
)


class Foreign(Enum):
    """
    What the first bytes of a connection that is not SOCKS look like.
    """

    HTTP = "an HTTP request"
    TLS = "a TLS ClientHello"
    UNKNOWN = "not a SOCKS request"
    UNDECIDED = "not enough bytes yet"


def identify(prefix: bytes) -> Foreign:
    """
    Tell what a connection whose first byte is neither 4 nor 5 speaks, from
    its first bytes.
    """
    if prefix[:1] == b"\x16" and (len(prefix) < 2 or prefix[1] == 0x03):
        return Foreign.TLS if len(prefix) >= 2 else Foreign.UNDECIDED
    for method in _HTTP_METHODS:
        if prefix.startswith(method):
            return Foreign.HTTP
        if method.startswith(prefix):
            return Foreign.UNDECIDED
    return Foreign.UNKNOWN
