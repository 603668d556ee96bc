"""
CONNECT: dial the target and hand its connection to the session.
"""

from twisted.internet import defer, error
from twisted.python.failure import Failure

from .._addresses import hostAndPort, isUnspecified
from .._wire import AddressType, SOCKS5ReplyCode, addressTypeOf
from ..errors import replyCodeFor
from ._command import CommandContext, Outcome, RefusedError, Relayed, Request
from ._target import TargetFactory, TargetProtocol

#: Why a destination that is one of the server's own sockets is refused.
OWN_ADDRESS_REASON = "the destination is this proxy's own listening address"


def checkDestination(context: CommandContext, host: str, port: int) -> None:
    """
    Refuse an IP destination that is unspecified or the server itself.

    @raise RefusedError: It is.
    """
    if addressTypeOf(host) is AddressType.DOMAIN:
        return
    if isUnspecified(host):
        raise RefusedError(
            SOCKS5ReplyCode.HOST_UNREACHABLE, "unspecified target address"
        )
    if (host, port) in context.ownAddresses:
        raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)


async def _connect(request: Request, context: CommandContext) -> Outcome:
    checkDestination(context, request.host, request.port)
    timeout = context.settings.connectTimeout
    try:
        endpoint = context.network.dial(request.host, request.port, timeout)
        connecting = endpoint.connect(TargetFactory(context.client))
    except Exception as e:  # a name that cannot even be dialled (bad IDNA)
        raise RefusedError(
            SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}"
        ) from e
    connecting.addTimeout(timeout, context.reactor)
    try:
        target = await connecting
    except (defer.CancelledError, error.ConnectingCancelledError):
        raise  # the session gave up on it: nothing to answer
    except ValueError as e:  # HostnameEndpoint's word for a name it cannot use
        raise RefusedError(
            SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}"
        ) from e
    except Exception as e:
        message = Failure(e).getErrorMessage()
        raise RefusedError(replyCodeFor(e), f"connecting failed: {message}") from e
    assert isinstance(target, TargetProtocol)
    # A name can resolve to the server itself; only now is the address known.
    if hostAndPort(target.stream.getPeer()) in context.ownAddresses:
        target.stream.abortConnection()
        raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)
    return Relayed(target, hostAndPort(target.stream.getHost()))


def connect(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a CONNECT: the target's connection, or L{RefusedError}.
    """
    return defer.Deferred.fromCoroutine(_connect(request, context))
