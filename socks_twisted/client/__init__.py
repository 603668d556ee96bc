"""
SOCKS clients for Twisted: endpoints that reach a target through a SOCKS4,
SOCKS4a or SOCKS5 proxy, their endpoint-string parsers, and an HTTP agent
that goes through a proxy.
"""

from ._agent import SOCKSAgentEndpointFactory, socksAgent
from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
)
from ._parsers import SOCKSClientParser
from ._tunnel import SOCKSTunnelTransport

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "SOCKS4ClientEndpoint",
    "SOCKS5ClientEndpoint",
    "SOCKSAgentEndpointFactory",
    "SOCKSClientParser",
    "SOCKSTunnelTransport",
    "socksAgent",
]
