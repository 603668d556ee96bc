"""
The SOCKS server: a listening factory that serves SOCKS4, SOCKS4a and SOCKS5.
"""

from ._factory import SOCKSServerFactory
from ._session import SOCKSServerProtocol

__all__ = ["SOCKSServerFactory", "SOCKSServerProtocol"]
