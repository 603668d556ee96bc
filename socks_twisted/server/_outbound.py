"""
The server's default dialler: how a target is reached, through only the
addresses the policy allows, from the source address it names.
"""

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IReactorCore,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from zope.interface import implementer

from .._addresses import hostAndPort
from .._wire import parseIP

#: Whether an address a name resolved to may be dialled.
AddressFilter = Callable[[str], bool]


class ConnectReactor(IReactorTCP, IReactorTime, IReactorCore):
    """
    What dialling a target needs of a reactor.
    """


@implementer(IResolutionReceiver)
class _FilteringReceiver:
    """
    Passes on only the resolved addresses C{accept} allows.
    """

    def __init__(self, receiver: IResolutionReceiver, accept: AddressFilter) -> None:
        self._receiver = receiver
        self._accept = accept

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        self._receiver.resolutionBegan(resolutionInProgress)

    def addressResolved(self, address: IAddress) -> None:
        host, _ = hostAndPort(address)
        if self._accept(host):
            self._receiver.addressResolved(address)

    def resolutionComplete(self) -> None:
        self._receiver.resolutionComplete()


@implementer(IHostnameResolver)
class FilteringResolver:
    """
    A resolver that hides the addresses C{accept} denies, so that what is
    checked is exactly what is dialled: one resolution, no second look-up
    between the check and the connection.
    """

    def __init__(self, resolver: IHostnameResolver, accept: AddressFilter) -> None:
        self._resolver = resolver
        self._accept = accept

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        return self._resolver.resolveHostName(
            _FilteringReceiver(resolutionReceiver, self._accept),
            hostName,
            portNumber,
            addressTypes,
            transportSemantics,
        )


@implementer(IReactorPluggableNameResolver)
class _ResolvingThrough:
    """
    A reactor whose name resolver is replaced, for one L{HostnameEndpoint}:
    everything else is the real reactor's.
    """

    def __init__(self, reactor: Any, resolver: IHostnameResolver) -> None:
        self._reactor = reactor
        self.nameResolver = resolver

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        raise NotImplementedError("a per-connection view of the reactor")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def endpointFor(
    reactor: ConnectReactor,
    host: str,
    port: int,
    timeout: float,
    *,
    accept: AddressFilter | None = None,
    bindAddress: str | None = None,
) -> IStreamClientEndpoint:
    """
    The endpoint that dials C{host}: IP literals directly, names through
    L{HostnameEndpoint}, which tries every allowed A and AAAA result (Happy
    Eyeballs).

    @param accept: Which of a name's addresses may be dialled; all when
        C{None}.  (An IP literal is the caller's to check.)
    @param bindAddress: The source address of the connection, if any.
    """
    source = (bindAddress, 0) if bindAddress is not None else None
    address = parseIP(host)
    if address is None:
        dialling: Any = reactor
        if accept is not None and IReactorPluggableNameResolver.providedBy(reactor):
            resolver = FilteringResolver(reactor.nameResolver, accept)
            dialling = _ResolvingThrough(reactor, resolver)
        return HostnameEndpoint(
            dialling, host, port, timeout=timeout, bindAddress=source
        )
    if address.version == 4:
        return _TimedTCP4ClientEndpoint(
            reactor, host, port, timeout=timeout, bindAddress=source
        )
    return _TimedTCP6ClientEndpoint(
        reactor, host, port, timeout=timeout, bindAddress=source
    )


class _TimedTCP4ClientEndpoint(TCP4ClientEndpoint):
    """
    An IPv4 literal's endpoint from L{endpointFor}: C{connectTCP} gives up
    after the connect timeout itself.
    """


class _TimedTCP6ClientEndpoint(TCP6ClientEndpoint):
    """
    An IPv6 literal's endpoint from L{endpointFor}: C{connectTCP} gives up
    after the connect timeout itself.
    """

    # Twisted leaves this constructor unannotated.
    def __init__(
        self,
        reactor: ConnectReactor,
        host: str,
        port: int,
        *,
        timeout: float,
        bindAddress: tuple[str, int] | None,
    ) -> None:
        TCP6ClientEndpoint.__init__(
            self, reactor, host, port, timeout=timeout, bindAddress=bindAddress
        )


def timesItself(endpoint: IStreamClientEndpoint) -> bool:
    """
    Whether C{endpoint} is one L{endpointFor} made for an IP literal, whose
    connection attempt fails by itself once the connect timeout it was given
    is over; the caller need not time it too.  Any other endpoint (a name's,
    whose look-up the TCP timeout does not cover, or one an embedding
    program's dialler made) is not known to.
    """
    return isinstance(endpoint, _TimedTCP4ClientEndpoint | _TimedTCP6ClientEndpoint)
