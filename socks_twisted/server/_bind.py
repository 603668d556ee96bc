"""
BIND: listen for one peer on the client's behalf, announce where, and hand
the peer's connection to the session.
"""

import socket
from collections.abc import Callable
from dataclasses import replace

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from .._addresses import (
    familyOf,
    familyOfAddress,
    formatHostPort,
    hostAndPort,
    isUnspecified,
)
from .._transport import StreamTransport
from .._wire import SOCKS5ReplyCode, normalizeIP
from ..errors import SOCKSError, replyCodeFor
from ._command import (
    OWN_ADDRESS_REASON,
    CommandContext,
    Outcome,
    RefusedError,
    Relayed,
    Request,
    deniedBy,
)
from ._local import replyAddress, serviceInterface
from ._target import TargetProtocol
from ._upstream import bindVia, upstreamFor


class UnexpectedPeerError(SOCKSError):
    """
    The connection to a BIND listener came from an address other than the
    one the request named.
    """

    def __init__(self, string: str) -> None:
        super().__init__(string=string)


class _AcceptedProtocol(TargetProtocol):
    def __init__(self, client: StreamTransport, accepted: "BindFactory") -> None:
        super().__init__(client)
        self._accepted = accepted

    def connectionMade(self) -> None:
        self._accepted.accepted(self)


class BindFactory(Factory):
    """
    Accepts the first connection to a BIND listener, and only it.

    @ivar peer: Fires with the L{TargetProtocol} of the accepted connection,
        or fails with L{UnexpectedPeerError} (or the rules' refusal).
        Cancelling it, or its firing, closes the listener.
    """

    noisy = False

    def __init__(
        self,
        client: StreamTransport,
        expected: frozenset[str] | None,
        checkPeer: Callable[[str, int], RefusedError | None] = lambda host, port: None,
    ) -> None:
        """
        @param expected: The addresses the peer may come from; any when
            C{None}.
        @param checkPeer: What the rules say of a peer: C{None}, or the
            refusal.
        """
        self._client = client
        self._expected = expected
        self._checkPeer = checkPeer
        self._done = False
        self.listener: IListeningPort | None = None
        self.peer: defer.Deferred[TargetProtocol] = defer.Deferred(
            lambda d: self.stopListening()
        )

    def stopListening(self) -> None:
        """
        Close the listener (once); no connection is accepted after this.
        """
        self._done = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.stopListening()

    def buildProtocol(self, addr: IAddress | None) -> TargetProtocol | None:
        if self._done:
            return None
        self.stopListening()
        host, port = hostAndPort(addr) if addr is not None else ("?", 0)
        if self._expected is not None and host not in self._expected:
            expected = ", ".join(sorted(self._expected))
            self.peer.errback(
                UnexpectedPeerError(
                    string=f"connection from {host}:{port}, expected from {expected}"
                )
            )
            return None
        refusal = self._checkPeer(host, port)
        if refusal is not None:
            self.peer.errback(refusal)
            return None
        return _AcceptedProtocol(self._client, self)

    def accepted(self, protocol: TargetProtocol) -> None:
        """
        The one accepted connection is made.
        """
        self.peer.callback(protocol)


async def _bind(request: Request, context: CommandContext) -> Outcome:
    host = request.host
    family: int
    if request.version == 4:
        family = socket.AF_INET
    else:
        family = familyOf(host) or familyOfAddress(context.localAddress)
    policy, asked = context.policy, context.policyRequest
    if familyOf(host) is None:
        try:
            resolved = await context.network.resolve(host, family)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise _refusal(Failure(e)) from e
        decisions = [(a, policy.decide(asked, a)) for a in resolved]
        expected: list[str] | None = [a for a, d in decisions if d.allowed]
        if not expected:
            raise deniedBy(decisions[0][1], f"BIND for every address of {host}")
    elif isUnspecified(host):
        expected = None
    else:
        if (host, request.port) in context.ownAddresses:
            raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)
        expected = [host]

    def checkPeer(peerHost: str, peerPort: int) -> RefusedError | None:
        decision = policy.decide(replace(asked, host=peerHost, port=peerPort))
        if decision.allowed:
            return None
        return deniedBy(decision, f"BIND peer {formatHostPort(peerHost, peerPort)}")

    peers = BindFactory(
        context.client,
        frozenset(map(normalizeIP, expected)) if expected else None,
        checkPeer,
    )
    interface = serviceInterface(context.localAddress, family)
    try:
        port = await context.network.listen(interface).listen(peers)
    except defer.CancelledError:
        raise
    except Exception as e:
        raise _refusal(Failure(e)) from e
    peers.listener = port
    context.announce(*replyAddress(port.getHost(), context.settings.externalAddresses))
    timeout = context.settings.bindTimeout
    waiting = peers.peer
    waiting.addTimeout(timeout, context.reactor)
    try:
        peer = await waiting
    except defer.CancelledError:
        raise
    except defer.TimeoutError as e:
        raise RefusedError(
            SOCKS5ReplyCode.TTL_EXPIRED,
            f"BIND failed: no peer connected within {timeout:g} s",
        ) from e
    except Exception as e:
        raise _refusal(Failure(e)) from e
    return Relayed(peer, hostAndPort(peer.stream.getPeer()))


def _refusal(failure: Failure) -> RefusedError:
    if isinstance(failure.value, RefusedError):
        return failure.value
    if isinstance(failure.value, UnexpectedPeerError):
        code = SOCKS5ReplyCode.NOT_ALLOWED
    else:
        code = replyCodeFor(failure)
    return RefusedError(code, f"BIND failed: {failure.getErrorMessage()}")


def bind(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a BIND: listen, announce the listener, and return the one peer's
    connection, or L{RefusedError}; or, routed through an upstream proxy,
    the upstream's BIND.
    """
    try:
        upstream = upstreamFor(context)
    except RefusedError:
        return defer.fail()
    if upstream is not None:
        return bindVia(request, context, upstream)
    return defer.Deferred.fromCoroutine(_bind(request, context))
