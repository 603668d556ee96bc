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
from ._outbound import timesItself
from ._target import TargetFactory, TargetProtocol
from ._upstream import connectVia, upstreamFor


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


def connect(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a CONNECT: the target's connection, or L{RefusedError}.

    (Plain callbacks rather than a coroutine: this runs for every
    connection, and the coroutine machinery cost more than the rest of it.)
    """
    host, port = request.host, request.port
    try:
        upstream = upstreamFor(context)
    except RefusedError:
        return defer.fail()
    if upstream is not None:
        return connectVia(request, context, upstream)
    try:
        checkDestination(context, host, port)
    except RefusedError:
        return defer.fail()
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
        return defer.fail(
            RefusedError(SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}")
        )
    if not timesItself(endpoint):
        # For an IP literal, the connection attempt's own timer is the same
        # timeout, and it always fires first (it was set first): a second
        # timer per connection was 3.5% of the server's time, for nothing.
        connecting.addTimeout(timeout, context.reactor)

    def connected(target: object) -> Outcome:
        assert isinstance(target, TargetProtocol)
        if isName:
            # What was reached is checked too: a name can resolve to the
            # server itself, and an embedding program's dialler may not
            # filter.  (An IP target was checked before it was dialled.)
            peer = hostAndPort(target.stream.getPeer())
            if peer in context.ownAddresses:
                target.stream.abortConnection()
                raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)
            decision = policy.decide(asked, peer[0])
            if not decision.allowed:
                target.stream.abortConnection()
                raise deniedBy(decision, f"{host} at {peer[0]}")
        return Relayed(target, hostAndPort(target.stream.getHost()))

    def failed(failure: Failure) -> Failure:
        e = failure.value
        if isinstance(e, (defer.CancelledError, error.ConnectingCancelledError)):
            return failure  # the session gave up on it: nothing to answer
        if isinstance(e, error.DNSLookupError) and denials:
            # The name resolved, but to nothing the rules allow.
            raise deniedBy(denials[0], f"every address of {host}")
        if isinstance(e, ValueError):  # HostnameEndpoint: a name it cannot use
            raise RefusedError(
                SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}"
            )
        raise RefusedError(
            replyCodeFor(failure), f"connecting failed: {failure.getErrorMessage()}"
        )

    return connecting.addCallbacks(connected, failed)
