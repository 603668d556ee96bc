"""
Upstream chaining: reaching targets through another SOCKS proxy, with this
package's own client (L{socks_twisted.client.SOCKSProxy}).

The route is chosen per request: the C{via} of the rule that allows it
(L{socks_twisted.policy.Policy.viaFor}), else the server's C{--upstream}
(L{ServerSettings.upstream}), else direct; a rule's C{via = "direct"}
bypasses C{--upstream}.  Each URL's client is made once
(L{UpstreamProxies}).

  - CONNECT goes through the upstream's CONNECT.  The success reply names
    the BND address of the upstream's reply (where the upstream connects to
    the target from), or, when the upstream names none (C{0.0.0.0:0}, as
    SOCKS4 servers and microsocks do), the local address of this server's
    connection to the upstream.
  - BIND goes through the upstream's BIND: the first reply names where the
    upstream listens, the second the peer the upstream saw.
  - UDP ASSOCIATE: this server opens an association with the upstream and
    becomes its UDP client (L{socks_twisted.server._upstreamudp}): each datagram of the
    client goes to the upstream's relay with the header naming its
    destination, and the relay's answers come back to the client with a
    header naming their source.  Only a SOCKS5 upstream can; through a
    SOCKS4 one the request is refused with 0x07 (command not supported).

The rules are still checked on the target the client asked for, and on
every address this server resolves itself: with C{socks5://} and
C{socks4://} upstreams names are resolved here (IPv4 first, then IPv6 for
SOCKS5), every address is checked, and the first allowed one is sent.  With
C{socks5h://} and C{socks4a://} the name is sent for the upstream to
resolve: the rules are then decided on the name alone
(L{socks_twisted.policy.Policy.decideByName}), and rules that only an
address could match cannot see what the upstream resolves it to.

Reply codes (L{upstreamRefusal}): a SOCKS5 failure code of the upstream is
passed on as it is; a SOCKS4 rejection (91) becomes 0x01 general failure (it
does not say whether the rules or the target refused), an identd failure
(92, 93) 0x02 not allowed; an upstream that cannot be reached, refuses our
credentials, or breaks the protocol gives 0x01 general failure (not 0x05:
the target did not refuse anything); a timeout gives 0x06 TTL expired.
"""

import socket
from dataclasses import dataclass, replace

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._addresses import (
    formatHostPort,
    hostAndPort,
    isUnspecified,
)
from .._proxyurl import parseProxyURL
from .._wire import (
    AddressType,
    SOCKS5ReplyCode,
    addressTypeOf,
    normalizeIP,
)
from ..client import SOCKSProxy, SOCKSTunnelTransport
from ..client._endpoints import SOCKSReactor
from ..errors import (
    AuthenticationFailedError,
    NoAcceptableMethodsError,
    SOCKS4IdentdMismatchError,
    SOCKS4IdentdUnreachableError,
    SOCKSReplyError,
)
from ..policy import DIRECT
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

_log = Logger()

#: Upstream clients kept at once (one per URL and connect timeout): more
#: than any configuration names, few enough that reloads cannot grow it.
MAX_UPSTREAMS = 64

#: The SOCKS5 reply codes an upstream's refusal is passed on with.
_SOCKS5_FAILURES = frozenset(code for code in SOCKS5ReplyCode if code != 0)


class UpstreamProxies:
    """
    Makes the client of each upstream proxy once, and keeps it.

    The client's connection and handshake timeouts are the server's connect
    timeout: reaching a target through an upstream takes as long as it is
    allowed to take directly.
    """

    def __init__(self, reactor: SOCKSReactor) -> None:
        self._reactor = reactor
        self._proxies: dict[tuple[str, float], SOCKSProxy] = {}

    def __call__(self, url: str, connectTimeout: float) -> SOCKSProxy:
        """
        The client of the proxy C{url} names.

        @raise ValueError: The URL is not a usable proxy URL.
        """
        key = (url, connectTimeout)
        proxy = self._proxies.get(key)
        if proxy is None:
            proxy = SOCKSProxy.fromURL(
                self._reactor,
                url,
                handshakeTimeout=connectTimeout,
                connectTimeout=connectTimeout,
            )
            if len(self._proxies) >= MAX_UPSTREAMS:
                del self._proxies[next(iter(self._proxies))]
            self._proxies[key] = proxy
        return proxy


@dataclass(frozen=True)
class Upstream:
    """
    The upstream proxy one request goes through.

    @ivar proxy: Its client.
    @ivar location: Its URL without credentials, for the log and replies.
    """

    proxy: SOCKSProxy
    location: str


def upstreamFor(context: CommandContext) -> Upstream | None:
    """
    The upstream proxy the request goes through, or C{None} to go direct:
    the C{via} of the rule that allows it, else the server's C{upstream}.

    @raise RefusedError: The network cannot reach upstream proxies, or the
        URL cannot be used (both configuration problems: 0x01).
    """
    policy, asked = context.policy, context.policyRequest
    if context.settings.upstream is None and not policy.routes:
        return None  # the common case, on every CONNECT: nothing to choose
    decision = context.decision
    if decision.allowed and decision.rule is not None:
        # The session's decision on the request itself: an IP target, or a
        # BIND or UDP ASSOCIATE decided whatever the destination.
        via = decision.rule.via
    else:
        anyDestination = asked.command == "udp" or (
            asked.command == "bind" and isUnspecified(asked.host)
        )
        via = policy.viaFor(asked, destinationKnown=not anyDestination)
    if via is None:
        via = context.settings.upstream
    if via is None or via == DIRECT:
        return None
    try:
        url = parseProxyURL(via)
    except ValueError as e:
        # Checked when the configuration was loaded: an embedding program's
        # settings are the only way here.
        raise RefusedError(
            SOCKS5ReplyCode.GENERAL_FAILURE, f"bad upstream proxy URL: {e}"
        ) from None
    location = url.location
    if (
        addressTypeOf(url.host) is not AddressType.DOMAIN
        and (normalizeIP(url.host), url.port) in context.ownAddresses
    ):
        # Each hop would make another, until the sessions run out.
        raise RefusedError(
            SOCKS5ReplyCode.GENERAL_FAILURE,
            f"upstream {location} is this server itself",
        )
    maker = context.network.upstream
    if maker is None:
        raise RefusedError(
            SOCKS5ReplyCode.GENERAL_FAILURE,
            f"upstream {location}: this server's network cannot reach upstream proxies",
        )
    try:
        proxy = maker(via, context.settings.connectTimeout)
    except ValueError as e:
        raise RefusedError(
            SOCKS5ReplyCode.GENERAL_FAILURE, f"upstream {location}: {e}"
        ) from None
    return Upstream(proxy, location)


def upstreamRefusal(failure: Failure, upstream: Upstream, what: str) -> RefusedError:
    """
    The refusal to answer when going through C{upstream} failed (see the
    module's docstring for the mapping).

    @param what: The command, for the reason (C{"CONNECT 10.0.0.1:80"}).
    """
    e = failure.value
    where = f"upstream {upstream.location}"
    message = failure.getErrorMessage()
    code = SOCKS5ReplyCode.GENERAL_FAILURE
    if isinstance(e, SOCKSReplyError):
        if isinstance(e, SOCKS4IdentdUnreachableError | SOCKS4IdentdMismatchError):
            code = SOCKS5ReplyCode.NOT_ALLOWED
        elif upstream.proxy.version == 5 and e.code in _SOCKS5_FAILURES:
            code = SOCKS5ReplyCode(e.code)
        reason = f"{what}: {where} refused: {message}"
    elif isinstance(e, AuthenticationFailedError | NoAcceptableMethodsError):
        reason = f"{what}: {where} did not accept our credentials: {message}"
    elif isinstance(
        e, error.TimeoutError | error.TCPTimedOutError | defer.TimeoutError
    ):
        code = SOCKS5ReplyCode.TTL_EXPIRED
        reason = f"{what}: {where} timed out: {message}"
    else:
        reason = f"{what}: {where} failed: {message}"
    return RefusedError(code, reason)


def isCancelled(e: BaseException) -> bool:
    """
    Whether C{e} says the attempt was cancelled (the client left).
    """
    return isinstance(e, defer.CancelledError | error.ConnectingCancelledError)


async def _allowedAddress(
    context: CommandContext, host: str, port: int, version: int
) -> str:
    """
    Resolve C{host} here for an upstream that takes addresses only
    (C{socks5://}, C{socks4://}), and return the first address the rules
    allow: IPv4 first, then (SOCKS5 only) IPv6.

    @raise RefusedError: It does not resolve, or the rules allow none of
        its addresses.
    """
    families = [socket.AF_INET] if version == 4 else [socket.AF_INET, socket.AF_INET6]
    policy, asked = context.policy, context.policyRequest
    denials = []
    own = False
    for family in families:
        try:
            addresses = await context.network.resolve(host, family)
        except defer.CancelledError:
            raise
        except Exception:
            continue
        for address in addresses:
            address = normalizeIP(address)
            if (address, port) in context.ownAddresses:
                own = True
                continue
            decision = policy.decide(asked, address)
            if decision.allowed:
                return address
            denials.append(decision)
    if denials:
        raise deniedBy(denials[0], f"every address of {host}")
    if own:
        raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)
    raise RefusedError(
        SOCKS5ReplyCode.HOST_UNREACHABLE, f"{host} has no address to send upstream"
    )


async def _destination(
    context: CommandContext, request: Request, upstream: Upstream
) -> str:
    """
    What the request to the upstream names: an IP literal as the client
    sent it; a name as it is for an upstream that resolves names, once the
    rules allow it by name; else an allowed address it resolves to here.
    """
    host, port = request.host, request.port
    if addressTypeOf(host) is not AddressType.DOMAIN:
        if not isUnspecified(host) and (host, port) in context.ownAddresses:
            raise RefusedError(SOCKS5ReplyCode.NOT_ALLOWED, OWN_ADDRESS_REASON)
        # The session decided the rules on it already.
        return host
    if upstream.proxy.resolveLocally:
        return await _allowedAddress(context, host, port, upstream.proxy.version)
    decision = context.policy.decideByName(context.policyRequest)
    if not decision.allowed:
        raise deniedBy(decision, f"{request.command.name} {formatHostPort(host, port)}")
    return host


def _unsendable(upstream: Upstream, host: str, e: ValueError) -> RefusedError:
    code = (
        SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
        if addressTypeOf(host) is AddressType.IPV6
        else SOCKS5ReplyCode.HOST_UNREACHABLE
    )
    return RefusedError(code, f"cannot ask upstream {upstream.location}: {e}")


def _replyAddress(target: TargetProtocol) -> tuple[str, int]:
    """
    The address a CONNECT through an upstream replies with: the upstream's
    BND address, or our end of the connection to it when it names none.
    """
    transport = target.transport
    if isinstance(transport, SOCKSTunnelTransport):
        host, port = hostAndPort(transport.proxyBoundAddress)
        if port != 0 and not isUnspecified(host):
            return host, port
    return hostAndPort(target.stream.getHost())


async def _connect(
    request: Request, context: CommandContext, upstream: Upstream
) -> Outcome:
    what = f"CONNECT {formatHostPort(request.host, request.port)}"
    if addressTypeOf(request.host) is not AddressType.DOMAIN and isUnspecified(
        request.host
    ):
        raise RefusedError(
            SOCKS5ReplyCode.HOST_UNREACHABLE, "unspecified target address"
        )
    host = await _destination(context, request, upstream)
    try:
        endpoint = upstream.proxy.endpoint(host, request.port)
    except ValueError as e:
        raise _unsendable(upstream, host, e) from None
    context.routed(upstream.location)
    try:
        target = await endpoint.connect(TargetFactory(context.client))
    except Exception as e:
        if isCancelled(e):
            raise
        raise upstreamRefusal(Failure(e), upstream, what) from None
    assert isinstance(target, TargetProtocol)
    address = _replyAddress(target)
    context.routed(upstream.location, formatHostPort(*address))
    return Relayed(target, address)


def connectVia(
    request: Request, context: CommandContext, upstream: Upstream
) -> "defer.Deferred[Outcome]":
    """
    Serve a CONNECT through C{upstream}: the tunnel to the target, or
    L{RefusedError}.
    """
    return defer.Deferred.fromCoroutine(_connect(request, context, upstream))


async def _bind(
    request: Request, context: CommandContext, upstream: Upstream
) -> Outcome:
    what = f"BIND {formatHostPort(request.host, request.port)}"
    host = await _destination(context, request, upstream)
    timeout = context.settings.bindTimeout
    context.routed(upstream.location)
    try:
        pending = await upstream.proxy.bind(
            TargetFactory(context.client), host, request.port, acceptTimeout=timeout
        )
    except ValueError as e:
        raise _unsendable(upstream, host, e) from None
    except Exception as e:
        if isCancelled(e):
            raise
        raise upstreamRefusal(Failure(e), upstream, what) from None
    announced = hostAndPort(pending.address)
    if announced[1] == 0:  # a name in the reply: the upstream's own address
        announced = hostAndPort(pending.proxyAddress)[0], pending.address.port
    context.routed(upstream.location, formatHostPort(*announced))
    context.announce(*announced)
    try:
        peer = await pending.accepted()
    except Exception as e:
        if isCancelled(e):
            raise
        if isinstance(e, error.TimeoutError):
            raise RefusedError(
                SOCKS5ReplyCode.TTL_EXPIRED,
                f"BIND failed: no peer connected to upstream {upstream.location} "
                f"within {timeout:g} s",
            ) from None
        raise upstreamRefusal(Failure(e), upstream, what) from None
    assert isinstance(peer, TargetProtocol)
    peerHost, peerPort = hostAndPort(peer.stream.getPeer())
    # The peer as the upstream saw it is what the rules check: this server
    # never sees the peer's own connection.
    decision = context.policy.decide(
        replace(context.policyRequest, host=peerHost, port=peerPort)
    )
    if not decision.allowed:
        peer.stream.abortConnection()
        raise deniedBy(decision, f"BIND peer {formatHostPort(peerHost, peerPort)}")
    return Relayed(peer, (peerHost, peerPort))


def bindVia(
    request: Request, context: CommandContext, upstream: Upstream
) -> "defer.Deferred[Outcome]":
    """
    Serve a BIND through C{upstream}: announce where the upstream listens,
    and return the tunnel to the peer it accepted, or L{RefusedError}.
    """
    return defer.Deferred.fromCoroutine(_bind(request, context, upstream))
