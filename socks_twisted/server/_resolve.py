"""
Name resolution for BIND and UDP targets and Tor's RESOLVE, through the
reactor's pluggable resolver, and reverse lookups for RESOLVE_PTR in the
reactor's thread pool: neither ever blocks the reactor.
"""

import socket
from collections.abc import Callable

from twisted.internet import defer, error, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IReactorFromThreads,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
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


#: Reverse lookups run at once by one L{ReverseResolver}.  Each holds a
#: thread of the reactor's pool while C{getnameinfo} blocks, and the default
#: name resolver (for CONNECT) uses that pool too: a burst of slow reverse
#: lookups waits its turn instead of taking every thread.
REVERSE_LOOKUPS = 4


def nameOf(address: str) -> str:
    """
    The name an address's PTR record (or the hosts file) gives it; blocks.

    @raise OSError: It has none (C{socket.gaierror}), or the lookup failed.
    """
    # NI_NAMEREQD: fail rather than answer the address itself as its name.
    name, _ = socket.getnameinfo((address, 0), socket.NI_NAMEREQD)
    return name


class ReverseResolver:
    """
    Reverse lookups (address to name) in the reactor's thread pool, at most
    L{REVERSE_LOOKUPS} at a time, so that they never block the reactor.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        pool: ThreadPool,
        lookups: int = REVERSE_LOOKUPS,
        lookup: Callable[[str], str] = nameOf,
    ) -> None:
        """
        @param reactor: Receives the results from the threads.
        @param pool: Runs the lookups.
        @param lookups: How many run at once; the others wait.
        @param lookup: The blocking lookup (L{nameOf}).
        """
        self._reactor = reactor
        self._pool = pool
        self._semaphore = defer.DeferredSemaphore(lookups)
        self._lookup = lookup

    def __call__(self, address: str) -> "defer.Deferred[str]":
        """
        Look C{address} up.  Cancelling the result abandons a lookup still
        waiting for its turn; one already running finishes in its thread
        (a thread cannot be stopped) and its answer is dropped.
        """
        acquired = self._semaphore.acquire()

        def cancel(_: object) -> None:
            if not acquired.called:
                acquired.cancel()

        result: defer.Deferred[str] = defer.Deferred(cancel)

        def start(_: object) -> None:
            work = threads.deferToThreadPool(
                self._reactor, self._pool, self._lookup, address
            )

            def finished(outcome: str | Failure) -> None:
                # The turn ends when the thread does, even if the caller
                # gave up earlier: the thread was busy until now.
                self._semaphore.release()
                if result.called:
                    return
                if isinstance(outcome, Failure):
                    result.errback(outcome)
                else:
                    result.callback(outcome)

            work.addBoth(finished)

        def notStarted(failure: Failure) -> None:
            failure.trap(defer.CancelledError)  # the caller cancelled

        acquired.addCallbacks(start, notStarted)
        return result
