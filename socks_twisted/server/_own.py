"""
The server's own listening sockets, so that it never relays to itself.

A CONNECT to the proxy's own port would open a nested session, and a
request that nests itself can be repeated until the server runs out of
sessions: one small write can open dozens.  Dante refuses its own port;
so do we.
"""

import errno
import ipaddress
import socket

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress

from .._addresses import isUnspecified, unmapped


def isLocalAddress(host: str) -> bool:
    """
    Whether C{host} (an IP literal) is an address of this machine: a
    loopback address, or one a socket can be bound to.
    """
    address = ipaddress.ip_address(host)
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError as e:
            if e.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
                return False
            raise
    return True


class OwnAddresses:
    """
    The TCP addresses this server listens on.

    A listener on a specific address is matched exactly; a wildcard listener
    (C{0.0.0.0}, C{::}) matches every local address with its port (C{::}
    also takes IPv4 on Linux, so it matches both families).
    """

    def __init__(self) -> None:
        self._exact: set[tuple[str, int]] = set()
        self._seen: set[tuple[str, int]] = set()
        self._anyIPv4: set[int] = set()
        self._anyIPv6: set[int] = set()
        #: Whether some address is not loopback: other hosts can connect.
        self.public = False

    def add(self, address: IAddress) -> None:
        """
        Remember an address the server listens or has accepted on; anything
        but an IP address (a UNIX socket) is ignored.
        """
        if not isinstance(address, IPv4Address | IPv6Address):
            return
        key = (address.host, address.port)
        if key in self._seen:  # once per distinct address: this runs per session
            return
        self._seen.add(key)
        host = unmapped(address.host)
        if not ipaddress.ip_address(host).is_loopback:
            self.public = True
        if isUnspecified(host):
            wildcards = self._anyIPv6 if ":" in host else self._anyIPv4
            wildcards.add(address.port)
        else:
            self._exact.add((host, address.port))

    def __contains__(self, destination: object) -> bool:
        """
        Whether C{(host, port)} (an IP literal and a port) is one of ours.
        """
        if not isinstance(destination, tuple) or len(destination) != 2:
            return False
        host, port = destination
        host = unmapped(host)
        if (host, port) in self._exact:
            return True
        if port in self._anyIPv6 or (port in self._anyIPv4 and ":" not in host):
            return isLocalAddress(host)
        return False
