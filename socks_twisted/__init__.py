"""
SOCKS4, SOCKS4a and SOCKS5 for Twisted: a server and client endpoints.

The client names are re-exported lazily, so that importing the sans-I/O
C{socks_twisted._wire} alone never imports Twisted.
"""

from typing import TYPE_CHECKING

#: The version of socks-twisted: the one place it is written (setup.cfg
#: reads it from here; C{twistd socks --version} prints it).
__version__ = "0.1.0.dev0"

if TYPE_CHECKING:
    from .client import (
        PendingBind,
        SOCKS4BindClient,
        SOCKS4ClientEndpoint,
        SOCKS5BindClient,
        SOCKS5ClientEndpoint,
        SOCKS5UDPAssociation,
        SOCKS5UDPClient,
        SOCKSAgentEndpointFactory,
        SOCKSTunnelTransport,
        socksAgent,
    )

__all__ = [
    "PendingBind",
    "SOCKS4BindClient",
    "SOCKS4ClientEndpoint",
    "SOCKS5BindClient",
    "SOCKS5ClientEndpoint",
    "SOCKS5UDPAssociation",
    "SOCKS5UDPClient",
    "SOCKSAgentEndpointFactory",
    "SOCKSTunnelTransport",
    "socksAgent",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
