"""
Proxy URLs (C{socks5h://user:password@host:port}) parsed into L{ProxyURL}:
shared by the client (L{socks_twisted.client.SOCKSProxy.fromURL}) and the
server's upstream chaining (C{--upstream}, a rule's C{via}), whose
configuration is checked without Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes, urlsplit

from ._wire import AddressType, addressTypeOf, encodeName, normalizeIP


def _checkHost(host: str) -> None:
    """
    Check that C{host} (an IP literal or a name) can be sent in a SOCKS
    request.

    @raise ValueError: It cannot.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if addressTypeOf(text) is AddressType.DOMAIN:
        encodeName(text)
    else:
        normalizeIP(text)


#: The port of a proxy URL that names none.
DEFAULT_PROXY_PORT = 1080

#: Scheme: (SOCKS version, resolve names on the client).  As curl does,
#: C{socks5} and C{socks4} resolve names locally; C{socks5h} and C{socks4a}
#: let the proxy resolve them.
SCHEMES: dict[str, tuple[int, bool]] = {
    "socks5": (5, True),
    "socks5h": (5, False),
    "socks4": (4, True),
    "socks4a": (4, False),
}


@dataclass(frozen=True)
class ProxyURL:
    """
    A parsed SOCKS proxy URL.

    @ivar scheme: C{socks5}, C{socks5h}, C{socks4} or C{socks4a}.
    @ivar host: The proxy's name or IP literal (without brackets).
    @ivar port: The proxy's port (1080 when the URL names none).
    @ivar username: The percent-decoded user, or C{None}: the RFC 1929
        username (SOCKS5) or the user ID (SOCKS4).
    @ivar password: The percent-decoded password, or C{None} (SOCKS5 only).
    """

    scheme: str
    host: str
    port: int
    username: bytes | None = None
    password: bytes | None = field(default=None, repr=False)

    @property
    def version(self) -> int:
        """
        The SOCKS version: 4 or 5.
        """
        return SCHEMES[self.scheme][0]

    @property
    def resolveLocally(self) -> bool:
        """
        Whether names are resolved on the client (C{socks5}, C{socks4}).
        """
        return SCHEMES[self.scheme][1]

    @property
    def location(self) -> str:
        """
        The URL without its credentials (C{socks5://127.0.0.1:1080}): what a
        log line may show.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parseProxyURL(url: str) -> ProxyURL:
    """
    Parse a SOCKS proxy URL as curl understands it.

    The userinfo is percent-decoded to bytes (non-ASCII text is taken as
    UTF-8).  An IPv6 literal is written in brackets.

    @raise ValueError: The scheme is unknown or missing, the host is missing
        or cannot be sent, the port is not a number from 1 to 65535, the URL
        has a path, query or fragment, a SOCKS4 URL carries a password, or
        a SOCKS5 URL has a password without a user; the message names the
        problem, never the password.
    """
    if not isinstance(url, str):
        raise ValueError(f"a proxy URL is text, not {type(url).__name__}")
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ValueError(
            "proxy URL has no scheme; use socks5://, socks5h://, socks4:// or "
            "socks4a://"
        )
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown proxy scheme {scheme!r}; use socks5, socks5h, socks4 or socks4a"
        )
    try:
        parts = urlsplit("//" + rest)
    except ValueError as e:
        raise ValueError(f"malformed proxy URL: {e}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL has no path, query or fragment")
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        userinfo = ""
    host = parts.hostname
    if not host:
        raise ValueError("proxy URL has no host")
    if hostport.startswith("[") and not hostport.partition("]")[0][1:]:
        raise ValueError("proxy URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(
            f"proxy URL has a bad port: {hostport.rpartition(':')[2]!r}"
        ) from None
    if port is None:
        if hostport.endswith(":"):
            raise ValueError("proxy URL has an empty port")
        port = DEFAULT_PROXY_PORT
    if port == 0:
        raise ValueError("proxy URL has a bad port: 0")
    if ":" in host and not hostport.startswith("["):  # pragma: no cover
        raise ValueError("write an IPv6 proxy address in brackets")
    try:
        _checkHost(host)
    except ValueError as e:
        raise ValueError(f"proxy URL has a bad host: {e}") from None
    username: bytes | None = None
    password: bytes | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote_to_bytes(user)
        if colon:
            password = unquote_to_bytes(secret)
    if SCHEMES[scheme][0] == 4:
        if password:
            raise ValueError(
                f"{scheme} has no password, only a user ID; use socks5 or socks5h"
            )
        password = None
        if username is not None and b"\x00" in username:
            raise ValueError("a SOCKS4 user ID cannot contain NUL")
    elif password is not None and not username:
        raise ValueError("proxy URL has a password but no user")
    if username == b"" and password is None:
        username = None
    return ProxyURL(scheme, host, port, username, password)
