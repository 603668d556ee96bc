"""
Proxy URLs (C{socks5h://user:password@host:port}) and the proxy environment
variables curl reads (C{ALL_PROXY}, C{https_proxy}, C{NO_PROXY}, ...).

Nothing here connects anywhere: it turns text into a L{ProxyURL} and decides
which hosts bypass the proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from .._proxyurl import DEFAULT_PROXY_PORT, SCHEMES, ProxyURL, parseProxyURL

__all__ = [
    "DEFAULT_PROXY_PORT",
    "SCHEMES",
    "NoProxy",
    "ProxyURL",
    "noProxyFromEnvironment",
    "parseProxyURL",
    "proxyFromEnvironment",
]


def _lookup(environ: Mapping[str, str], name: str) -> str | None:
    """
    The value of C{name}, lowercase first, then uppercase; empty counts as
    unset.
    """
    for key in (name.lower(), name.upper()):
        value = environ.get(key)
        if value and value.strip():
            return value.strip()
    return None


def proxyFromEnvironment(
    environ: Mapping[str, str], scheme: str | None
) -> ProxyURL | None:
    """
    The SOCKS proxy the environment names, with curl's precedence: the
    variable of the target's scheme (C{https_proxy} then C{HTTPS_PROXY};
    for C{http} only the lowercase C{http_proxy}, as curl does), then
    C{all_proxy}, then C{ALL_PROXY}.

    A scheme variable that holds a URL that is not a SOCKS one (an HTTP
    proxy) is passed over: this client cannot use it.

    @return: The proxy, or C{None} when none is named.
    @raise ValueError: The variable chosen holds a bad SOCKS URL, or
        C{ALL_PROXY} holds a URL of another scheme.
    """
    if scheme:
        scheme = scheme.lower()
        name = f"{scheme}_proxy"
        value = environ.get(name) or None
        if value is None and scheme != "http":
            value = environ.get(name.upper()) or None
        if value is not None and value.strip():
            candidate = value.strip()
            if candidate.partition("://")[0].lower() in SCHEMES:
                return parseProxyURL(candidate)
    value = _lookup(environ, "all_proxy")
    if value is None:
        return None
    return parseProxyURL(value)


def noProxyFromEnvironment(environ: Mapping[str, str]) -> str | None:
    """
    C{no_proxy}, else C{NO_PROXY}, or C{None} when neither is set.  (An
    empty value is kept: it means "bypass nothing".)
    """
    for key in ("no_proxy", "NO_PROXY"):
        if key in environ:
            return environ[key]
    return None


def _splitHostPort(token: str) -> tuple[str, int | None]:
    """
    Split C{host:port} or C{[v6]:port}; an IPv6 literal without brackets
    has no port.
    """
    if token.startswith("["):
        inside, _, after = token[1:].partition("]")
        if after.startswith(":") and after[1:].isdigit():
            return inside, int(after[1:])
        return inside, None
    if token.count(":") == 1:
        host, _, port = token.partition(":")
        if port.isdigit():
            return host, int(port)
    return token, None


class NoProxy:
    """
    curl's C{NO_PROXY} rules.

    The value is a list of names separated by commas (and blanks).  C{*}
    alone bypasses every host.  A name matches that host and every host
    under it: C{example.com} and C{.example.com} both match
    C{example.com} and C{www.example.com}, not C{notexample.com}.  An IP
    address (IPv6 without brackets) matches that address; a CIDR block
    (C{10.0.0.0/8}, C{fd00::/8}) every address in it; names are not
    resolved to check them.  C{host:port} (C{[v6]:port}) matches only that
    port.  Matching ignores case and a trailing dot.
    """

    def __init__(self, value: str | None) -> None:
        """
        @param value: The C{NO_PROXY} text, or C{None} (nothing bypasses).
        """
        self.value = value
        text = (value or "").strip()
        self._all = text == "*"
        self._rules: list[
            tuple[str | ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]
        ] = []
        for raw in text.replace(",", " ").split():
            host, port = _splitHostPort(raw.lower())
            if "/" in host:
                try:
                    self._rules.append((ipaddress.ip_network(host, strict=False), port))
                except ValueError:
                    continue
                continue
            host = host.strip(".") if host != "." else host
            if host:
                self._rules.append((host, port))

    def __repr__(self) -> str:
        return f"NoProxy({self.value!r})"

    def bypasses(self, host: str, port: int | None = None) -> bool:
        """
        Whether C{host} (a name or IP literal, brackets allowed) on C{port}
        should be reached directly.  A rule with a port never matches when
        C{port} is C{None}.
        """
        if self._all:
            return True
        name = host.strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        name = name.rstrip(".")
        if not name:
            return False
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        try:
            address = ipaddress.ip_address(name.partition("%")[0])
        except ValueError:
            address = None
        for rule, rulePort in self._rules:
            if rulePort is not None and rulePort != port:
                continue
            if isinstance(rule, str):
                if address is not None:
                    try:
                        if ipaddress.ip_address(rule) == address:
                            return True
                    except ValueError:
                        pass
                    continue
                if name == rule or name.endswith("." + rule):
                    return True
            elif address is not None and address in rule:
                return True
        return False
