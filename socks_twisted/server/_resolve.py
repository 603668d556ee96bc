"""
Name resolution for BIND and UDP targets, through the reactor's pluggable
resolver so it never blocks the reactor.
"""

import socket

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from zope.interface import implementer

from .._wire import normalizeIP


@implementer(IResolutionReceiver)
class _Collector:
    def __init__(self, name: str, deferred: "defer.Deferred[list[str]]") -> None:
        self._name = name
        self._deferred = deferred
        self._addresses: list[str] = []

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        if isinstance(address, IPv4Address | IPv6Address):
            self._addresses.append(normalizeIP(address.host))

    def resolutionComplete(self) -> None:
        if self._addresses:
            self._deferred.callback(self._addresses)
        else:
            self._deferred.errback(error.DNSLookupError(self._name))


def resolveName(
    reactor: IReactorPluggableNameResolver, name: str, family: int
) -> "defer.Deferred[list[str]]":
    """
    Resolve C{name} to its addresses of one family (C{socket.AF_INET} or
    C{socket.AF_INET6}).  Fails with L{error.DNSLookupError} when there are
    none.
    """
    addressType = IPv4Address if family == socket.AF_INET else IPv6Address
    result: defer.Deferred[list[str]] = defer.Deferred()
    reactor.nameResolver.resolveHostName(
        _Collector(name, result), name, 0, [addressType]
    )
    return result
