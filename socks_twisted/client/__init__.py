"""
SOCKS clients for Twisted: endpoints that reach a target through a SOCKS4,
SOCKS4a or SOCKS5 proxy, their endpoint-string parsers, an HTTP agent that
goes through a proxy, BIND clients (a proxy listens for one peer for us), a
SOCKS5 UDP ASSOCIATE client, and L{SOCKSProxy}, which makes all of them for
one proxy named by a URL or the environment.
"""

from .._wire import AuthMethod, ProtectionLevel
from ._agent import SOCKSAgentEndpointFactory, socksAgent
from ._association import SOCKS5UDPAssociation
from ._bind import PendingBind, SOCKS4BindClient, SOCKS5BindClient
from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    ISOCKSReactor,
    SOCKS4ClientEndpoint,
    SOCKS5ClientEndpoint,
    SOCKSReactor,
)
from ._environment import DEFAULT_PROXY_PORT, NoProxy, ProxyURL, parseProxyURL
from ._gssapi import GSSAPIOptions
from ._parsers import SOCKSClientParser
from ._proxy import SOCKSProxy
from ._tunnel import SOCKSTunnelTransport
from ._udp import SOCKS5UDPClient

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_PROXY_PORT",
    "AuthMethod",
    "GSSAPIOptions",
    "ISOCKSReactor",
    "NoProxy",
    "PendingBind",
    "ProtectionLevel",
    "ProxyURL",
    "SOCKS4BindClient",
    "SOCKS4ClientEndpoint",
    "SOCKS5BindClient",
    "SOCKS5ClientEndpoint",
    "SOCKS5UDPAssociation",
    "SOCKS5UDPClient",
    "SOCKSAgentEndpointFactory",
    "SOCKSClientParser",
    "SOCKSProxy",
    "SOCKSReactor",
    "SOCKSTunnelTransport",
    "parseProxyURL",
    "socksAgent",
]
