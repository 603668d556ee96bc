"""
The listening factory: one server's settings, network, own addresses and
session count.
"""

from collections.abc import Callable, Mapping
from typing import Any, cast

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorFromThreads,
    IReactorPluggableNameResolver,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from .._addresses import formatAddress
from .._bandwidth import BucketRegistry
from ..client._endpoints import SOCKSReactor
from ..policy import Policy, Rule
from ._limits import BACK_OFF, PER_CLIENT, RATE, Limiter, clientKey
from ._metrics import ServerMetrics
from ._outbound import ConnectReactor, endpointFor
from ._own import OwnAddresses
from ._resolve import ReverseResolver, resolveName
from ._session import SOCKSServerProtocol
from ._settings import (
    Dialler,
    ListenerMaker,
    Network,
    Resolver,
    ServerSettings,
    SimpleDialler,
    UDPOpener,
)
from ._settings import ReverseResolver as _Reverser
from ._upstream import UpstreamProxies

_log = Logger()

#: Seconds between counts of the bytes open sessions relayed.
FLUSH_INTERVAL = 1.0


class SOCKSServerFactory(Factory):
    """
    Serve SOCKS4, SOCKS4a and SOCKS5 on every connection: the first byte
    tells which.

    The settings are given either as one L{ServerSettings} (C{settings}) or
    as its fields by keyword (C{portal}, C{handshakeTimeout}, ...; see
    L{ServerSettings}), not both.

    @param reactor: Runs the timers; the default network also dials,
        listens and resolves with it, so it must then provide
        L{IReactorTCP<twisted.internet.interfaces.IReactorTCP>},
        L{IReactorUDP<twisted.internet.interfaces.IReactorUDP>} and
        L{IReactorPluggableNameResolver<twisted.internet.interfaces.IReactorPluggableNameResolver>}
        too.
    @param endpointFor: Makes the endpoint that dials C{(host, port,
        timeout)}; the policy then checks a name's address once connected
        (the connection is closed if it is denied).
    @param dialler: Makes the endpoint that dials a target, also given
        which of a name's addresses the policy allows and the source
        address (see L{Dialler}); by default TCP for IP literals and
        L{HostnameEndpoint<twisted.internet.endpoints.HostnameEndpoint>} for
        names, through the allowed addresses only.
    @param listenFor: Makes the endpoint a BIND listener listens on, given
        the interface; by default TCP on an ephemeral port.
    @param listenUDP: Opens the UDP port of an association on an interface;
        by default the reactor's, on an ephemeral port.
    @param resolve: Resolves a name to the addresses of one family (for BIND
        peers, UDP targets and RESOLVE); by default the reactor's resolver.
    @param reverse: Looks an address up for its name (RESOLVE_PTR); by
        default C{getnameinfo} in the reactor's thread pool, a few at a time
        (L{ReverseResolver<socks_twisted.server._settings.ReverseResolver>}).

    @ivar sessions: The sessions open now.
    @ivar ownAddresses: Where this server listens: never a destination.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        settings: ServerSettings | None = None,
        portal: Portal | None = None,
        endpointFor: SimpleDialler | None = None,
        dialler: Dialler | None = None,
        listenFor: ListenerMaker | None = None,
        listenUDP: UDPOpener | None = None,
        resolve: Resolver | None = None,
        reverse: _Reverser | None = None,
        metrics: ServerMetrics | None = None,
        **fields: Any,
    ) -> None:
        if settings is None:
            settings = ServerSettings(portal=portal, **fields)
        elif portal is not None or fields:
            raise TypeError("give settings or its fields, not both")
        self.reactor = reactor
        self.settings = settings
        full = cast(_FullReactor, reactor)
        if dialler is None:
            dialler = (
                _simpleDialler(endpointFor)
                if endpointFor is not None
                else _defaultDialler(full)
            )
        self.network = Network(
            dial=dialler,
            listen=listenFor or (lambda interface: _listenerFor(full, interface)),
            listenUDP=listenUDP
            or (lambda interface, p: full.listenUDP(0, p, interface, 65535)),
            resolve=resolve or (lambda name, family: resolveName(full, name, family)),
            reverse=reverse or _defaultReverse(full),
            upstream=UpstreamProxies(cast(SOCKSReactor, reactor)),
        )
        self.ownAddresses = OwnAddresses()
        self._rules: tuple[Rule, ...] = ()
        self._groups: Mapping[str, frozenset[str]] = {}
        self._publicListener = False
        self._policy: Policy | None = None
        self._policyPublic = False
        self.limiter = Limiter(reactor, settings.limits)
        self.userBandwidthUp = BucketRegistry(reactor, settings.bandwidthPerUser)
        self.userBandwidthDown = BucketRegistry(reactor, settings.bandwidthPerUser)
        self._refusals = _RefusalLog(reactor)
        self.metrics = metrics if metrics is not None else ServerMetrics()
        self.sessions: set[SOCKSServerProtocol] = set()
        self._flushing: IDelayedCall | None = None

    def setRules(
        self,
        rules: tuple[Rule, ...],
        groups: Mapping[str, frozenset[str]],
        *,
        publicListener: bool = False,
    ) -> None:
        """
        Apply access rules (L{socks_twisted.policy.parseRules}); new
        requests are decided by them at once.

        @param publicListener: Whether some listener is reachable from other
            hosts, so that the default rules also deny the loopback,
            link-local, unspecified and multicast addresses.  A listening
            or accepting address that is not loopback counts too.
        """
        self._rules, self._groups = rules, groups
        self._publicListener = publicListener
        self._policy = None

    @property
    def policy(self) -> Policy:
        """
        The rules in force: the ones given to L{setRules} and the default
        ones around them.
        """
        public = self._publicListener or self.ownAddresses.public
        if self._policy is None or public != self._policyPublic:
            self._policy = Policy(self._rules, self._groups, self.ownAddresses, public)
            self._policyPublic = public
        return self._policy

    def reconfigure(self, settings: ServerSettings) -> None:
        """
        Apply new settings (a reload): new sessions read them; open
        sessions keep running, their bandwidth caps following the new
        values.
        """
        self.settings = settings
        self.limiter.configure(settings.limits)
        self.userBandwidthUp.setRate(settings.bandwidthPerUser)
        self.userBandwidthDown.setRate(settings.bandwidthPerUser)
        for session in self.sessions:
            session.reconfigure(settings)

    def addListeningAddress(self, address: IAddress) -> None:
        """
        Tell the server an address it listens on (the C{getHost()} of a
        listening port), so that it refuses requests to reach itself there.
        Addresses clients are accepted on are learnt without this; telling
        it covers the addresses no client has used yet.
        """
        self.ownAddresses.add(address)

    def buildProtocol(self, addr: IAddress | None) -> SOCKSServerProtocol | None:
        if not self._roomFor(addr):
            return None
        client = clientKey(addr)
        if not self._admit(client, addr):
            return None
        return self._opened(SOCKSServerProtocol(self, client))

    def behindProxy(self) -> Factory:
        """
        This factory as a listener behind a load balancer that speaks the
        PROXY protocol (a C{haproxy:} description) must see it: the address
        a connection comes from is the balancer's, so the client's rules
        and limits wait for the real client in the header (see
        L{admitBehindProxy}).
        """
        return _BehindProxy(self)

    def buildProtocolBehindProxy(
        self, addr: IAddress | None
    ) -> SOCKSServerProtocol | None:
        """
        L{buildProtocol} for a connection from a load balancer: only the
        session cap applies yet.
        """
        if not self._roomFor(addr):
            return None
        return self._opened(SOCKSServerProtocol(self, behindProxy=True))

    def admitBehindProxy(self, protocol: SOCKSServerProtocol, peer: IAddress) -> bool:
        """
        The PROXY header named the real client C{peer}: may it start a
        session?  If so, it is counted, and C{protocol.clientKey} set.
        """
        client = clientKey(peer)
        if not self._admit(client, peer):
            return False
        protocol.clientKey = client
        return True

    def _roomFor(self, addr: IAddress | None) -> bool:
        if len(self.sessions) < self.settings.maxSessions:
            return True
        self.metrics.refused("max_sessions")
        self._refusals.refused(
            formatAddress(addr),
            f"{len(self.sessions)} sessions open, the limit (--max-sessions)",
        )
        return False

    def _admit(self, client: str | None, addr: IAddress | None) -> bool:
        """
        The client rules and limits: may C{client} (the key of C{addr})
        start a session?  If so, it is counted.
        """
        if not self.policy.mayEverAllow(client):
            self.metrics.refused("no_rule")
            self._refusals.refused(formatAddress(addr), "no rule allows this client")
            return False
        refusal = self.limiter.admitClient(client)
        if refusal is not None:
            self.metrics.refused(refusal)
            if refusal != BACK_OFF:  # the limiter logs those once a period
                self._refusals.refused(formatAddress(addr), _LIMIT_NAMES[refusal])
            return False
        return True

    def _opened(self, protocol: SOCKSServerProtocol) -> SOCKSServerProtocol:
        self.sessions.add(protocol)
        if self._flushing is None and self.metrics.exported:
            self._flushing = self.reactor.callLater(FLUSH_INTERVAL, self._flush)
        return protocol

    def _flush(self) -> None:
        """
        Count the bytes each open session relayed in the last second: busy
        sessions show in the metrics while they run, not only at their end.
        """
        self._flushing = None
        for session in self.sessions:
            session.flushTransferred()
        if self.sessions:
            self._flushing = self.reactor.callLater(FLUSH_INTERVAL, self._flush)

    def sessionClosed(self, protocol: SOCKSServerProtocol) -> None:
        """
        Forget a session whose client connection ended.
        """
        if protocol in self.sessions:
            self.sessions.discard(protocol)
            self.limiter.releaseClient(protocol.clientKey)
        if not self.sessions and self._flushing is not None:
            # Each session counts its own last bytes as it ends.
            self._flushing.cancel()
            self._flushing = None


class _BehindProxy(Factory):
    """
    Builds a L{SOCKSServerFactory}'s sessions for a listener behind a load
    balancer (see L{SOCKSServerFactory.behindProxy}).
    """

    noisy = False

    def __init__(self, factory: SOCKSServerFactory) -> None:
        self._factory = factory

    def buildProtocol(self, addr: IAddress | None) -> SOCKSServerProtocol | None:
        return self._factory.buildProtocolBehindProxy(addr)


#: How a refusal by the limiter is logged.
_LIMIT_NAMES = {
    PER_CLIENT: "sessions-per-client reached",
    RATE: "new-sessions-per-second-per-client exceeded",
}


class _RefusalLog:
    """
    Logs connections refused at accept: the first for a reason at once,
    then at most one line a second that counts the others, so that a flood
    of connections cannot flood the log.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        self._suppressed: dict[str, int] = {}
        self._flush: IDelayedCall | None = None

    def refused(self, peer: str, why: str) -> None:
        if why in self._suppressed:
            self._suppressed[why] += 1
            return
        _log.warn("refusing connection from {peer}: {why}", peer=peer, why=why)
        self._suppressed[why] = 0
        if self._flush is None:
            self._flush = self._reactor.callLater(1.0, self._report)

    def _report(self) -> None:
        self._flush = None
        counts, self._suppressed = self._suppressed, {}
        for why, count in counts.items():
            if count:
                _log.warn(
                    "refused {count} more connections in the last second: {why}",
                    count=count,
                    why=why,
                )
                self._suppressed[why] = 0
        if self._suppressed:
            self._flush = self._reactor.callLater(1.0, self._report)


def _simpleDialler(endpointFor: SimpleDialler) -> Dialler:
    def dial(
        host: str,
        port: int,
        timeout: float,
        *,
        accept: Callable[[str], bool] | None = None,
        bindAddress: str | None = None,
    ) -> IStreamClientEndpoint:
        return endpointFor(host, port, timeout)

    return dial


def _defaultDialler(reactor: "_FullReactor") -> Dialler:
    def dial(
        host: str,
        port: int,
        timeout: float,
        *,
        accept: Callable[[str], bool] | None = None,
        bindAddress: str | None = None,
    ) -> IStreamClientEndpoint:
        return endpointFor(
            reactor, host, port, timeout, accept=accept, bindAddress=bindAddress
        )

    return dial


class _FullReactor(
    ConnectReactor,
    IReactorUDP,
    IReactorPluggableNameResolver,
    IReactorThreads,
    IReactorFromThreads,
):
    """
    What the default dialler, listeners and resolvers need of a reactor.
    """


def _defaultReverse(reactor: _FullReactor) -> _Reverser:
    """
    Reverse lookups in the reactor's thread pool, made when the first one
    is asked for: a server that never gets RESOLVE_PTR (or whose reactor
    has no threads, as in tests) starts no pool.
    """
    resolver: ReverseResolver | None = None

    def reverse(address: str) -> "Deferred[str]":
        nonlocal resolver
        if resolver is None:
            resolver = ReverseResolver(reactor, reactor.getThreadPool())
        return resolver(address)

    return reverse


def _listenerFor(reactor: _FullReactor, interface: str) -> IStreamServerEndpoint:
    if ":" in interface:
        return TCP6ServerEndpoint(reactor, 0, interface=interface)
    return TCP4ServerEndpoint(reactor, 0, interface=interface)
