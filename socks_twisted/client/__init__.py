"""
SOCKS clients for Twisted: endpoints that reach a target through a SOCKS4,
SOCKS4a or SOCKS5 proxy, their endpoint-string parsers, an HTTP agent that
goes through a proxy, BIND clients (a proxy listens for one peer for us) and
a SOCKS5 UDP ASSOCIATE client.
"""

from ._agent import SOCKSAgentEndpointFactory, socksAgent
from ._bind import PendingBind, SOCKS4BindClient, SOCKS5BindClient
from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
)
from ._parsers import SOCKSClientParser
from ._tunnel import SOCKSTunnelTransport
from ._udp import SOCKS5UDPAssociation, SOCKS5UDPClient

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "PendingBind",
    "SOCKS4BindClient",
    "SOCKS4ClientEndpoint",
    "SOCKS5BindClient",
    "SOCKS5ClientEndpoint",
    "SOCKS5UDPAssociation",
    "SOCKS5UDPClient",
    "SOCKSAgentEndpointFactory",
    "SOCKSClientParser",
    "SOCKSTunnelTransport",
    "socksAgent",
]
