"""
Endpoint-string parsers for C{clientFromString}: C{socks5:}, C{socks4a:} and
C{socks4:}.

The proxy is itself an endpoint description, given as the C{proxy=}
keyword with its colons escaped by a backslash::

    socks5:example.com:443:proxy=tcp\\:127.0.0.1\\:1080
    socks5:host=example.com:port=443:proxy=tcp\\:127.0.0.1\\:1080:username=u:password=p
    socks4a:example.com:80:proxy=tcp\\:127.0.0.1\\:1080:userID=alice
    socks5:host=\\:\\:1:port=80:proxy=tcp\\:127.0.0.1\\:1080

Each level of nesting escapes the backslashes of the level inside it, so a
chain of two proxies reads::

    socks5:example.com:80:proxy=socks5\\:10.0.0.2\\:1080\\:proxy=tcp\\\\\\:127.0.0.1\\\\\\:1080

C{socks4:} resolves names locally and speaks plain SOCKS4; C{socks4a:} sends
names to the proxy (SOCKS4a); C{socks5:} sends names to the proxy unless
C{resolveLocally=yes}.
"""

from __future__ import annotations

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
)

_TRUE = frozenset({"yes", "true", "1", "on"})
_FALSE = frozenset({"no", "false", "0", "off"})

_COMMON = frozenset({"host", "port", "proxy", "handshakeTimeout"})
_KEYWORDS = {
    "socks5": _COMMON | {"username", "password", "resolveLocally"},
    "socks4a": _COMMON | {"userID"},
    "socks4": _COMMON | {"userID"},
}


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not yes or no")


def _timeout(value: str | None) -> float | None:
    if value is None:
        return DEFAULT_HANDSHAKE_TIMEOUT
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"handshakeTimeout={value!r} is not a number") from None


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class SOCKSClientParser:
    """
    The C{clientFromString} parser for one prefix: C{"socks5"},
    C{"socks4a"} or C{"socks4"}.
    """

    def __init__(self, prefix: str) -> None:
        if prefix not in _KEYWORDS:
            raise ValueError(f"unknown SOCKS endpoint prefix {prefix!r}")
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"SOCKSClientParser({self.prefix!r})"

    def parseStreamClient(
        self, reactor: IReactorCore, *rawArgs: object, **rawKwargs: object
    ) -> IStreamClientEndpoint:
        """
        Build the endpoint a C{socks5:}, C{socks4a:} or C{socks4:}
        description names.

        @raise ValueError: A keyword is unknown or missing, or a value is
            wrong.
        """
        args = [str(value) for value in rawArgs]
        kwargs = {name: str(value) for name, value in rawKwargs.items()}
        unknown = set(kwargs) - _KEYWORDS[self.prefix]
        if unknown:
            raise ValueError(
                f"{self.prefix}: unknown keyword(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_KEYWORDS[self.prefix]))}"
            )
        positional = list(args)
        if len(positional) > 2:
            raise ValueError(
                f"{self.prefix}: too many positional arguments {positional!r}; "
                "escape the colons of an IPv6 address with a backslash"
            )
        values: dict[str, str] = {}
        for name, value in zip(("host", "port"), positional, strict=False):
            values[name] = value
        for name in ("host", "port"):
            if name in kwargs:
                if name in values:
                    raise ValueError(f"{self.prefix}: {name} given twice")
                values[name] = kwargs[name]
            if name not in values:
                raise ValueError(f"{self.prefix}: {name} is missing")
        if "proxy" not in kwargs:
            raise ValueError(
                f"{self.prefix}: proxy= is missing, such as "
                "proxy=tcp\\:127.0.0.1\\:1080"
            )
        try:
            port = int(values["port"])
        except ValueError:
            raise ValueError(
                f"{self.prefix}: port {values['port']!r} is not a number"
            ) from None
        proxyEndpoint = clientFromString(reactor, kwargs["proxy"])
        timeout = _timeout(kwargs.get("handshakeTimeout"))
        host = values["host"]
        if self.prefix == "socks5":
            username = kwargs.get("username")
            password = kwargs.get("password")
            if (username is None) != (password is None):
                raise ValueError("socks5: give both username= and password=, or none")
            credentials = None
            if username is not None and password is not None:
                credentials = (username, password)
            return SOCKS5ClientEndpoint(
                host,
                port,
                proxyEndpoint,
                credentials=credentials,
                resolveLocally=_flag(
                    "resolveLocally", kwargs.get("resolveLocally", "no")
                ),
                handshakeTimeout=timeout,
                reactor=IReactorTime(reactor),
            )
        return SOCKS4ClientEndpoint(
            host,
            port,
            proxyEndpoint,
            userID=kwargs.get("userID", ""),
            resolveLocally=self.prefix == "socks4",
            handshakeTimeout=timeout,
            reactor=IReactorTime(reactor),
        )
