"""
The server's outbound side: dialling the target and naming the outcome.
"""

import errno
import ipaddress
from typing import TYPE_CHECKING

from twisted.internet import defer, error
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IReactorCore,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .._wire import SOCKS5ReplyCode, normalizeIP
from ..relay import Relay

if TYPE_CHECKING:
    from ._session import SOCKSServerProtocol


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


_ERRNO_REPLIES = {
    errno.ECONNREFUSED: SOCKS5ReplyCode.CONNECTION_REFUSED,
    errno.EHOSTUNREACH: SOCKS5ReplyCode.HOST_UNREACHABLE,
    errno.EHOSTDOWN: SOCKS5ReplyCode.HOST_UNREACHABLE,
    errno.ENETUNREACH: SOCKS5ReplyCode.NETWORK_UNREACHABLE,
    errno.ENETDOWN: SOCKS5ReplyCode.NETWORK_UNREACHABLE,
    errno.ETIMEDOUT: SOCKS5ReplyCode.TTL_EXPIRED,
    errno.EACCES: SOCKS5ReplyCode.NOT_ALLOWED,
    errno.EPERM: SOCKS5ReplyCode.NOT_ALLOWED,
}


def replyCodeFor(failure: Failure) -> SOCKS5ReplyCode:
    """
    The SOCKS5 reply code that names why dialling the target failed.
    """
    if isinstance(failure.value, error.ConnectionRefusedError):
        return SOCKS5ReplyCode.CONNECTION_REFUSED
    if isinstance(failure.value, (error.DNSLookupError, error.UnknownHostError)):
        return SOCKS5ReplyCode.HOST_UNREACHABLE
    if isinstance(
        failure.value, (error.TimeoutError, error.TCPTimedOutError, defer.TimeoutError)
    ):
        return SOCKS5ReplyCode.TTL_EXPIRED
    value = failure.value
    osError = getattr(value, "osError", None)
    if isinstance(value, OSError):
        osError = value.errno
    if isinstance(osError, int) and osError in _ERRNO_REPLIES:
        return _ERRNO_REPLIES[osError]
    if isinstance(failure.value, error.NoRouteError):
        return SOCKS5ReplyCode.NETWORK_UNREACHABLE
    return SOCKS5ReplyCode.GENERAL_FAILURE


def hostAndPort(address: IAddress) -> tuple[str, int]:
    """
    The IP and port of a TCP address, without an IPv6 scope.
    """
    host: str = getattr(address, "host", "0.0.0.0")
    port: int = getattr(address, "port", 0)
    return normalizeIP(host), port


@implementer(IHalfCloseableProtocol)
class TargetProtocol(Protocol):
    """
    The connection from the server to the target; once the session relays,
    every byte goes straight to the client's transport.
    """

    relay: Relay | None = None

    def __init__(self, session: "SOCKSServerProtocol") -> None:
        self.session = session
        self.bytesReceived = 0

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        self.session.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        if self.relay is not None:
            self.relay.readClosed(self.transport)  # type: ignore[arg-type]

    def writeConnectionLost(self) -> None:
        pass  # the relay shut this direction itself

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.relay is not None:
            self.relay.connectionLost(self.transport, reason)  # type: ignore[arg-type]


class TargetFactory(Factory):
    """
    Builds the one L{TargetProtocol} of a session.
    """

    noisy = False  # one per session: the session's own log line says enough

    def __init__(self, session: "SOCKSServerProtocol") -> None:
        self.session = session

    def buildProtocol(self, addr: IAddress | None) -> TargetProtocol:
        return TargetProtocol(self.session)
