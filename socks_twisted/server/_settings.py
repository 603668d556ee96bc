"""
What a server is told once and every session reads: the settings (plain
values from the command line or the embedding program) and the network
(how it dials, listens and resolves).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import DatagramProtocol

from .._wire import ProtectionLevel
from ..client import SOCKSProxy
from ._limits import LimitSettings

if TYPE_CHECKING:
    from .._gss import Acceptor

#: The protection levels a server grants by default: any the client asks
#: for that its context can provide.
ALL_PROTECTION_LEVELS = frozenset(
    {
        ProtectionLevel.NONE,
        ProtectionLevel.INTEGRITY,
        ProtectionLevel.CONFIDENTIALITY,
    }
)


@dataclass(frozen=True)
class GSSAPISettings:
    """
    How a server serves the GSSAPI method (SOCKS5 method 0x01, RFC 1961).

    @ivar newAcceptor: Makes the acceptor context of one session (see
        L{socks_twisted._gss.Acceptor}, over the server's acceptor
        credentials).
    @ivar portal: What the authenticated principal logs in through, as
        L{GSSAPIPrincipal<socks_twisted.auth.GSSAPIPrincipal>} credentials:
        it must have a checker for
        L{IGSSAPIPrincipal<socks_twisted.auth.IGSSAPIPrincipal>}, such as
        L{GSSAPIPrincipalChecker<socks_twisted.auth.GSSAPIPrincipalChecker>}.
    @ivar protection: The protection levels the server may grant.  It
        answers the level the client asks for when it is one of these and
        the context provides it, else the strongest of these the context
        provides (L{chooseProtection}).
    @ivar service: The service name a client's ticket must be for
        (C{rcmd/proxy.example.com@EXAMPLE.COM} is C{rcmd}), whatever its host
        part, or C{None} for any principal in the acceptor's keytab.
    """

    newAcceptor: "Callable[[], Acceptor]"
    portal: Portal
    protection: frozenset[ProtectionLevel] = ALL_PROTECTION_LEVELS
    service: str | None = "rcmd"


def chooseProtection(
    requested: ProtectionLevel,
    available: frozenset[ProtectionLevel],
    allowed: frozenset[ProtectionLevel],
) -> ProtectionLevel | None:
    """
    The protection level a server answers (RFC 1961 section 4.3: the server
    chooses): C{requested} when it is both C{available} (the context) and
    C{allowed} (the operator); otherwise the strongest level that is both.

    @return: The level, or C{None} when no level is both.
    """
    usable = available & allowed
    if requested in usable:
        return requested
    return max(usable, default=None)


#: Makes the endpoint that dials C{(host, port, timeout)}: the simple form an
#: embedding program may give.
SimpleDialler = Callable[[str, int, float], IStreamClientEndpoint]


class Dialler(Protocol):
    """
    Makes the endpoint that dials a target.
    """

    def __call__(
        self,
        host: str,
        port: int,
        timeout: float,
        *,
        accept: Callable[[str], bool] | None = None,
        bindAddress: str | None = None,
    ) -> IStreamClientEndpoint:
        """
        @param accept: For a name, which of its addresses may be dialled
            (the policy); all when C{None}.
        @param bindAddress: The connection's source address, if any.
        """


#: Makes the endpoint a BIND listener listens on, given its interface.
ListenerMaker = Callable[[str], IStreamServerEndpoint]
#: Opens the UDP port of an association on an interface.
UDPOpener = Callable[[str, DatagramProtocol], IListeningPort]
#: Resolves a name to the addresses of one family.
Resolver = Callable[[str, int], "defer.Deferred[list[str]]"]
#: Looks an address up for its name (RESOLVE_PTR).
ReverseResolver = Callable[[str], "defer.Deferred[str]"]
#: The upstream SOCKS proxy a URL names, made once per URL: given the URL
#: and the seconds allowed to connect to it.
UpstreamMaker = Callable[[str, float], SOCKSProxy]


@dataclass(frozen=True)
class ServerSettings:
    """
    The settings every session of one server reads.

    @ivar portal: When given, SOCKS5 clients must pass RFC 1929
        username/password authentication against it, and SOCKS4 requests
        are refused unless C{allowSOCKS4WithAuth}.
    @ivar gssapi: When given, SOCKS5 clients may authenticate with the
        GSSAPI method (RFC 1961); with a C{portal} too, the client's order of
        methods decides which.  SOCKS4 requests are refused as with
        C{portal}.
    @ivar handshakeTimeout: Seconds from accepting a connection to its
        request being read, in total (not reset by each byte).
    @ivar connectTimeout: Seconds allowed to reach the target, name
        resolution included.
    @ivar idleTimeout: Seconds without a byte either way after which an
        established session is closed; C{None} for never.
    @ivar maxSessions: Sessions open at once; connections beyond it are
        closed as soon as they are accepted.
    @ivar bindTimeout: Seconds a BIND listener waits for its peer.
    @ivar udpTimeout: Seconds without a datagram either way after which a
        UDP association ends.
    @ivar externalAddresses: The IPs (at most one per family) that BIND
        and UDP ASSOCIATE replies name instead of the listener's own (the
        server's public addresses behind NAT); a reply whose listener is of
        a family not among them names the address the client reached us at.
    @ivar limits: Sessions per client and per user, new sessions per
        second, and the authentication-failure back-off.
    @ivar bandwidthPerSession: Bytes per second each way for one relayed
        session; C{None} for no cap.
    @ivar bandwidthPerUser: Bytes per second each way shared by all of one
        user's relayed sessions; C{None} for no cap.
    @ivar splice: Relay with splice(2) where the platform and both
        connections allow it (see L{socks_twisted.relay}); C{False} copies
        every byte through Python.
    @ivar torResolve: Serve Tor's RESOLVE and RESOLVE_PTR commands
        (torspec socks-extensions.txt); when C{False} they get reply 0x07
        (SOCKS4: 91), as any unknown command does.
    @ivar upstream: The URL of the SOCKS proxy that CONNECT, BIND and UDP
        ASSOCIATE reach their targets through (C{socks5h://user:pw@host:port};
        see L{socks_twisted.server._upstream}), unless a rule's C{via} says
        otherwise; C{None} to reach them directly.
    """

    portal: Portal | None = None
    allowSOCKS4WithAuth: bool = False
    gssapi: GSSAPISettings | None = None
    handshakeTimeout: float = 30.0
    connectTimeout: float = 30.0
    idleTimeout: float | None = None
    maxSessions: int = 1024
    bindTimeout: float = 120.0
    udpTimeout: float = 300.0
    externalAddresses: tuple[str, ...] = ()
    limits: LimitSettings = field(default_factory=LimitSettings)
    bandwidthPerSession: int | None = None
    bandwidthPerUser: int | None = None
    splice: bool = True
    torResolve: bool = True
    upstream: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Network:
    """
    How a server reaches the network: each is replaceable for tests or to
    route outbound traffic differently.

    @ivar dial: Makes the endpoint that dials a target.
    @ivar listen: Makes the endpoint a BIND listener listens on.
    @ivar listenUDP: Opens the UDP port of an association.
    @ivar resolve: Resolves names for BIND peers, UDP targets and RESOLVE.
    @ivar reverse: Looks addresses up for their names (RESOLVE_PTR).
    @ivar upstream: Makes the client of an upstream proxy from its URL
        (C{--upstream}, a rule's C{via}); C{None} when this network cannot
        reach upstream proxies, and a request routed through one is refused.
    """

    dial: Dialler
    listen: ListenerMaker
    listenUDP: UDPOpener
    resolve: Resolver
    reverse: ReverseResolver
    upstream: UpstreamMaker | None = None
