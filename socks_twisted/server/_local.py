"""
Where BIND and UDP ASSOCIATE open their sockets, and the address their
replies name.
"""

import ipaddress
import socket
from collections.abc import Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress

from .._addresses import familyOf, familyOfAddress, hostAndPort, normalizeIP


def serviceInterface(local: IAddress, family: int) -> str:
    """
    Where to listen for a BIND peer or UDP datagrams of C{family}: the
    address the client reached this server at (C{local}) when it is of that
    family; otherwise loopback if the client came over loopback (or a UNIX
    socket), else every interface.
    """
    if isinstance(local, IPv4Address | IPv6Address):
        host = normalizeIP(local.host)
        if familyOfAddress(local) == family:
            return host
        loopback = ipaddress.ip_address(host).is_loopback
    else:
        loopback = True  # a UNIX socket: local clients only
    if family == socket.AF_INET:
        return "127.0.0.1" if loopback else "0.0.0.0"
    return "::1" if loopback else "::"


def replyAddress(listening: IAddress, external: Sequence[str] = ()) -> tuple[str, int]:
    """
    The address a reply names for a listener: the operator's external
    address of the listener's family when there is one (for NAT), else the
    listener's own.
    """
    host, port = hostAndPort(listening)
    family = familyOf(host)
    for address in external:
        if familyOf(address) == family:
            return address, port
    return host, port
