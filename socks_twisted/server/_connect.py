"""
CONNECT: dial the target and hand its connection to the session.
"""

from twisted.internet import defer, error
from twisted.python.failure import Failure

from .._addresses import hostAndPort, isUnspecified
from .._wire import AddressType, SOCKS5ReplyCode, addressTypeOf
from ..errors import replyCodeFor
from ..policy import Decision
from ._command import (
    OWN_ADDRESS_REASON,
    CommandContext,
    Outcome,
    RefusedError,
    Relayed,
    Request,
    deniedBy,
)
from ._target import TargetFactory, TargetProtocol


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
    host, port = request.host, request.port
    checkDestination(context, host, port)
    isName = addressTypeOf(host) is AddressType.DOMAIN
    policy, asked = context.policy, context.policyRequest
    denials: list[Decision] = []

    def accept(address: str) -> bool:
        decision = policy.decide(asked, address)
        if decision.allowed:
            return True
        denials.append(decision)
        return False

    timeout = context.settings.connectTimeout
    try:
        endpoint = context.network.dial(
            host,
            port,
            timeout,
            accept=accept if isName else None,
            bindAddress=policy.bindFor(asked) if isName else context.decision.bind,
        )
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
    except error.DNSLookupError as e:
        if denials:  # the name resolved, but to nothing the rules allow
            raise deniedBy(denials[0], f"every address of {host}") from e
        raise RefusedError(
            replyCodeFor(e), f"connecting failed: {Failure(e).getErrorMessage()}"
        ) from e
    except ValueError as e:  # HostnameEndpoint's word for a name it cannot use
        raise RefusedError(
            SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}"
        ) from e
    except Exception as e:
        message = Failure(e).getErrorMessage()
        raise RefusedError(replyCodeFor(e), f"connecting failed: {message}") from e
    assert isinstance(target, TargetProtocol)
    # What was reached is checked too: a name can resolve to the server
    # itself, and a dialler of the embedding program's may not filter.
    peer = hostAndPort(target.stream.getPeer())
    if peer in context.ownAddresses:
        target.stream.abortConnection()
        raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)
    if isName:
        decision = policy.decide(asked, peer[0])
        if not decision.allowed:
            target.stream.abortConnection()
            raise deniedBy(decision, f"{host} at {peer[0]}")
    return Relayed(target, hostAndPort(target.stream.getHost()))


def connect(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a CONNECT: the target's connection, or L{RefusedError}.
    """
    return defer.Deferred.fromCoroutine(_connect(request, context))
