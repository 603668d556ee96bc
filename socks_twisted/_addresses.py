"""
Addresses as the server and the client handle them: hosts and ports checked
and normalised, families told apart, Twisted address objects made and read,
and addresses written for people.

Everything that parses or compares an IP literal above the wire layer goes
through here, so the rules (no IPv6 scope, IPv4-mapped IPv6 is IPv4, an
unspecified address names the proxy's own) are written once.
"""

import ipaddress
import socket
from functools import lru_cache

from twisted.internet.address import (
    HostnameAddress,
    IPv4Address,
    IPv6Address,
    UNIXAddress,
)
from twisted.internet.interfaces import IAddress

from ._wire import AddressType, addressTypeOf, encodeName, normalizeIP, parseIP

__all__ = [
    "TunnelAddress",
    "addressFor",
    "checkPort",
    "familyOf",
    "familyOfAddress",
    "formatAddress",
    "formatHostPort",
    "hostAndPort",
    "isUnspecified",
    "normalizeHost",
    "normalizeIP",
    "orProxyAddress",
    "unmapped",
]

TunnelAddress = IPv4Address | IPv6Address | HostnameAddress


def checkPort(port: int, lowest: int = 1) -> int:
    """
    Return C{port} if it is an C{int} from C{lowest} to 65535.

    @raise ValueError: It is not.
    """
    if (
        not isinstance(port, int)
        or isinstance(port, bool)
        or not (lowest <= port <= 0xFFFF)
    ):
        raise ValueError(f"port {port!r} is not in {lowest}-65535")
    return port


def normalizeHost(host: str | bytes) -> tuple[AddressType, str]:
    """
    Tell what C{host} is and give the form it goes on the wire in: a
    compressed IP literal (brackets around an IPv6 literal are removed), or
    an ASCII name (IDNA-encoded if needed).

    @raise ValueError: C{host} is not ASCII as C{bytes}, is empty, or its
        encoding is longer than the 255 bytes SOCKS allows.
    """
    text = host.decode("ascii") if isinstance(host, bytes) else host
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    addressType = addressTypeOf(text)
    if addressType is AddressType.DOMAIN:
        return addressType, encodeName(text).decode("ascii")
    return addressType, normalizeIP(text)


# Cached: the limits key every client connection by it.
@lru_cache(maxsize=4096)
def unmapped(host: str) -> str:
    """
    The canonical text of an IP literal, with an IPv4-mapped IPv6 address
    (C{::ffff:127.0.0.1}) written as the IPv4 address it carries, so that
    both spellings of one destination compare equal.
    """
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def isUnspecified(host: str) -> bool:
    """
    Whether C{host} is C{0.0.0.0} or C{::} (a name never is).
    """
    address = parseIP(host)
    return address is not None and address.is_unspecified


def familyOf(host: str) -> int | None:
    """
    C{socket.AF_INET} or C{socket.AF_INET6} for an IP literal; C{None} for a
    name.
    """
    addressType = addressTypeOf(host)
    if addressType is AddressType.IPV4:
        return socket.AF_INET
    if addressType is AddressType.IPV6:
        return socket.AF_INET6
    return None


def familyOfAddress(address: IAddress) -> int:
    """
    The address family of a connection's address; anything that is not IPv6
    (a UNIX socket included) counts as IPv4.
    """
    return socket.AF_INET6 if isinstance(address, IPv6Address) else socket.AF_INET


def hostAndPort(address: IAddress) -> tuple[str, int]:
    """
    The IP and port of a TCP or UDP address, without an IPv6 scope; C{0.0.0.0}
    and 0 for an address that has none (a UNIX socket).
    """
    if isinstance(address, IPv4Address | IPv6Address):
        return normalizeIP(address.host), address.port
    return "0.0.0.0", 0


def addressFor(host: str | bytes, port: int) -> TunnelAddress:
    """
    The L{IAddress} of a SOCKS target or BND address: L{IPv4Address} or
    L{IPv6Address} for IP literals, L{HostnameAddress} for names.

    @param host: An IP literal or a name (a name as sent on the wire, that is
        IDNA-encoded, when given as C{bytes}).
    @param port: The TCP port.
    """
    text = host.decode("ascii") if isinstance(host, bytes) else host
    parsed = parseIP(text)
    if parsed is None:
        raw = host if isinstance(host, bytes) else host.encode("ascii")
        return HostnameAddress(raw, port)
    if parsed.version == 4:
        return IPv4Address("TCP", str(parsed), port)
    return IPv6Address("TCP", str(parsed), port)


def orProxyAddress(announced: TunnelAddress, proxy: IAddress) -> TunnelAddress:
    """
    Where to reach an address a proxy announced (BND.ADDR): the address
    itself, unless it is unspecified (C{0.0.0.0}, C{::}), which by the common
    convention means the proxy's own address, with the announced port.

    @param proxy: The proxy's address, as the connection to it reports it.
    """
    if isinstance(announced, HostnameAddress) or not isUnspecified(announced.host):
        return announced
    if isinstance(proxy, IPv4Address | IPv6Address):
        return addressFor(normalizeIP(proxy.host), announced.port)
    if isinstance(proxy, HostnameAddress):
        return HostnameAddress(proxy.hostname, announced.port)
    return announced  # a UNIX socket: nothing better to say


def formatHostPort(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 literal in brackets so that the port cannot be
    mistaken for part of it.
    """
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def formatAddress(address: IAddress | None) -> str:
    """
    An address as a log line shows it: C{v4:port}, C{[v6]:port},
    C{name:port}, a UNIX socket's path (or C{unix} for an unnamed one).
    """
    if isinstance(address, IPv4Address | IPv6Address):
        return formatHostPort(normalizeIP(address.host), address.port)
    if isinstance(address, HostnameAddress):
        return formatHostPort(address.hostname.decode("ascii", "replace"), address.port)
    if isinstance(address, UNIXAddress):
        name = address.name
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return name or "unix"
    return "-" if address is None else str(address)
