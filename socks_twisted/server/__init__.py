"""
The SOCKS server: a listening factory that serves SOCKS4, SOCKS4a and SOCKS5.

How a session flows, module by module:

 - L{_factory}: accepts a connection (or refuses it past C{maxSessions})
   and builds a L{_session.SOCKSServerProtocol} that reads the
   L{_settings.ServerSettings} and L{_settings.Network} it was given;
 - L{_session}: sniffs the version (L{_foreign} answers HTTP and TLS sent
   by mistake), runs the handshake on the sans-I/O wire layer, checks
   credentials, then hands the request to its command's handler;
 - L{_command}: the one interface every handler implements: a request in, a
   cancellable L{Deferred<twisted.internet.defer.Deferred>} of the outcome
   out; L{_connect}, L{_bind}, L{_associate} and L{_lookup} (Tor's RESOLVE
   and RESOLVE_PTR, through L{_resolve}) are the handlers (L{_udp} is the
   association's datagram relay, L{_target} the connection to the other
   side); L{_upstream} serves the first three through an upstream SOCKS
   proxy when C{--upstream} or a rule's C{via} says so (UDP ASSOCIATE in
   L{_upstreamudp}); L{_gssmethod} is the GSSAPI method's part of a
   session;
 - L{socks_twisted.relay}: pumps bytes once the session relays;
   L{_throttling} caps its bandwidth;
 - L{_sessionlog}: the escaped start and end events of each session;
   L{_metrics}: the Prometheus metrics it counts itself in.

Who may do what: the factory closes at accept a client no rule could allow
(L{socks_twisted.policy}) or that is over its limits (L{_limits}); the
session asks the rules about the request, and the command handlers about
every address they dial, peer they accept or datagram they send.
"""

from ._factory import SOCKSServerFactory
from ._session import SOCKSServerProtocol
from ._settings import GSSAPISettings, Network, ServerSettings

__all__ = [
    "GSSAPISettings",
    "Network",
    "SOCKSServerFactory",
    "SOCKSServerProtocol",
    "ServerSettings",
]
