"""
The server's default dialler: how a target is reached.
"""

import ipaddress

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)


class ConnectReactor(IReactorTCP, IReactorTime, IReactorCore):
    """
    What dialling a target needs of a reactor.
    """


def endpointFor(
    reactor: ConnectReactor, host: str, port: int, timeout: float
) -> IStreamClientEndpoint:
    """
    The endpoint that dials C{host}: IP literals directly, names through
    L{HostnameEndpoint}, which tries every A and AAAA result (Happy
    Eyeballs).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    if address.version == 4:
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
