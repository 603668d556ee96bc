"""
UDP ASSOCIATE through an upstream SOCKS5 proxy (see
L{socks_twisted.server._upstream}): this server's relay for the client
(L{UpstreamAssociation}) feeds an association that this server opens with
the upstream, as its UDP client.
"""

from collections.abc import Callable, Container

from twisted.internet import defer, error
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure

from .._addresses import (
    familyOfAddress,
    formatAddress,
    hostAndPort,
    isUnspecified,
)
from .._gssstream import DatagramWrapper
from .._wire import (
    AddressType,
    SOCKS5ReplyCode,
    addressTypeOf,
    encodeSOCKS5Address,
    normalizeIP,
)
from ..client._association import SOCKS5UDPAssociation
from ._command import Associated, CommandContext, Outcome, RefusedError, Request
from ._datagramrules import DatagramRules
from ._local import replyAddress, serviceInterface
from ._settings import Resolver
from ._udp import _WHOLE, MAX_NAMES, MAX_TARGETS, Permit, UDPAssociation, _remember
from ._upstream import Upstream, isCancelled, upstreamRefusal

#: What the rules say of a datagram's destination named by a name that only
#: the upstream resolves: C{(name, port)} to C{None} or the denial.
NamePermit = Callable[[str, int], str | None]


class _FromUpstream(DatagramProtocol):
    """
    The protocol of this server's association with the upstream: hands
    every answer to the L{UpstreamAssociation}.
    """

    noisy = False

    def __init__(self, association: "UpstreamAssociation") -> None:
        self._association = association

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self._association.fromUpstream(datagram, addr)

    def stopProtocol(self) -> None:
        self._association.upstreamEnded()


class UpstreamAssociation(UDPAssociation):
    """
    The relay of one association whose datagrams go through an upstream
    SOCKS5 proxy's association rather than to their targets.

    The client's side is L{UDPAssociation}'s: the same header checks,
    caches, rules and counts.  What would be sent to a target is written to
    the upstream association (L{SOCKS5UDPAssociation}) instead, which adds
    the header naming the target; what the upstream relays back comes with
    its source, and goes to the client with a header naming it, if the
    client sent to that source (or, for names the upstream resolves, to a
    name on that port).

    @param passNames: Send names for the upstream to resolve (C{socks5h});
        otherwise names are resolved here as for a direct association.
    @param permitName: What the rules say of a name sent unresolved.
    @param ended: Called once if the upstream ends the association first.
    """

    def __init__(
        self,
        clientHost: str,
        clientPort: int,
        family: int,
        resolve: Resolver,
        forbidden: Container[tuple[str, int]],
        permit: Permit,
        session: str,
        *,
        passNames: bool,
        permitName: NamePermit,
        ended: Callable[[], None],
        protection: DatagramWrapper | None = None,
    ) -> None:
        super().__init__(
            clientHost,
            clientPort,
            family,
            resolve,
            forbidden,
            permit,
            session,
            protection,
        )
        self._passNames = passNames
        self._permitName = permitName
        self._onEnded = ended
        self._relay: SOCKS5UDPAssociation | None = None
        self._closing = False
        #: Ports the client sent to names on: answers from any source on
        #: them are the upstream's resolution of those names.
        self._namePorts: set[int] = set()
        #: A source the upstream reported -> the header for the client.
        self._sources: dict[tuple[str, int], bytes] = {}
        self.receiver = _FromUpstream(self)

    def attach(self, relay: SOCKS5UDPAssociation) -> None:
        """
        The upstream association is open: datagrams may flow.
        """
        self._relay = relay

    def stopProtocol(self) -> None:
        """
        The client's socket is closed (the session ended): end the upstream
        association too.
        """
        super().stopProtocol()
        self._closing = True
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.stopListening()

    def upstreamEnded(self) -> None:
        """
        The upstream association ended (its control connection closed).
        """
        self._relay = None
        if not self._closing:
            self._closing = True
            self.drops["upstream association ended"] += 1
            self._onEnded()

    def _fromClientSlowly(self, datagram: bytes) -> None:
        # As UDPAssociation's, but any address family may go upstream, and
        # names may be passed on unresolved.
        read = self._readRequest(datagram)
        if read is None:
            return
        request, key = read
        if addressTypeOf(request.host) is AddressType.DOMAIN:
            if self._passNames:
                self._sendName(request.data, request.host, request.port, key)
                return
            known = self._names.get(request.host)
            if known is not None:
                self._send(request.data, known, request.port, request.host, key)
            else:
                self._resolveAndSend(request)
        elif isUnspecified(request.host):
            self.drops["unspecified target"] += 1
        else:
            self._send(request.data, request.host, request.port, None, key)

    def _sendName(self, data: bytes, name: str, port: int, key: bytes) -> None:
        target = (name, port)
        if target not in self._targets:
            denial = self._permitName(name, port)
            if denial is not None:
                self._deny(target, denial)
                return
            if len(self._targets) >= MAX_TARGETS:
                del self._targets[next(iter(self._targets))]
            self._targets[target] = None
            if len(self._namePorts) < MAX_NAMES:
                self._namePorts.add(port)
        _remember(self._destinations, key, target)
        self._forward(data, target)

    def _forward(self, data: bytes, target: tuple[str, int]) -> None:
        relay = self._relay
        if relay is None:
            self.drops["upstream association not open"] += 1
            return
        self.datagramsFromClient += 1
        self.bytesFromClient += len(data)
        try:
            relay.write(data, target)
        except (OSError, ValueError, error.MessageLengthError) as e:
            self.drops[f"send upstream failed ({type(e).__name__})"] += 1

    def fromUpstream(self, data: bytes, source: tuple[str, int]) -> None:
        """
        A datagram the upstream relayed from C{source}: to the client, if
        the client sent to it.
        """
        header = self._sources.get(source)
        if header is None:
            host, port = source
            if addressTypeOf(host) is not AddressType.DOMAIN:
                host = normalizeIP(host)
            if (host, port) not in self._targets and port not in self._namePorts:
                self.drops["unknown source"] += 1
                return
            header = _WHOLE + encodeSOCKS5Address(host, port)
            if len(self._sources) >= MAX_NAMES:
                del self._sources[next(iter(self._sources))]
            self._sources[source] = header
        self._toClient(data, header)


async def _associate(
    request: Request, context: CommandContext, upstream: Upstream
) -> Outcome:
    proxy = upstream.proxy
    if proxy.version != 5:
        raise RefusedError(
            SOCKS5ReplyCode.COMMAND_NOT_SUPPORTED,
            f"UDP ASSOCIATE: upstream {upstream.location} is SOCKS4, which has no UDP",
        )
    family = familyOfAddress(context.localAddress)
    clientHost, _ = hostAndPort(context.client.getPeer())
    rules = DatagramRules(context)
    association = UpstreamAssociation(
        clientHost,
        request.port,
        family,
        context.network.resolve,
        context.ownAddresses,
        rules.permit,
        context.sessionID,
        protection=context.datagramProtection,
        passNames=not proxy.resolveLocally,
        permitName=rules.permitName,
        ended=context.client.loseConnection,
    )
    interface = serviceInterface(context.localAddress, family)
    try:
        port: IListeningPort = context.network.listenUDP(interface, association)
    except Exception as e:
        raise RefusedError(SOCKS5ReplyCode.GENERAL_FAILURE, f"no UDP port: {e}") from e
    context.routed(upstream.location)
    try:
        relay = await proxy.udp(association.receiver)
    except BaseException as e:
        port.stopListening()
        if isinstance(e, Exception) and not isCancelled(e):
            raise upstreamRefusal(Failure(e), upstream, "UDP ASSOCIATE") from None
        raise
    association.attach(relay)
    context.routed(upstream.location, formatAddress(relay.relayAddress))
    address = replyAddress(port.getHost(), context.settings.externalAddresses)
    return Associated(association, port, address)


def associateVia(
    request: Request, context: CommandContext, upstream: Upstream
) -> "defer.Deferred[Outcome]":
    """
    Serve a UDP ASSOCIATE through C{upstream}: this server's relay for the
    client, feeding an association with the upstream, or L{RefusedError}.
    """
    return defer.Deferred.fromCoroutine(_associate(request, context, upstream))
