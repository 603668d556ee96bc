"""
Twisted plugins of socks-twisted: the C{twistd socks} server and the
C{socks5:}, C{socks4a:} and C{socks4:} client endpoint strings.

This directory must never hold an C{__init__.py}: it would replace Twisted's
own C{twisted.plugins} package.
"""

from twisted.application.service import ServiceMaker

socksServer = ServiceMaker(
    "socks-twisted SOCKS server",
    "socks_twisted.tap",
    "A SOCKS4, SOCKS4a and SOCKS5 proxy server (socks-twisted).",
    "socks",
)


def _takeOverTwistedSOCKS() -> None:
    """
    Twisted ships a SOCKSv4 plugin under the same tapname.  twistd parses
    options with the first plugin of a name and builds the service with the
    last, in plugin-cache order, which no package controls.  Pointing
    Twisted's entry at our module makes both ours, whatever the order.
    """
    try:
        from twisted.plugins import twisted_socks
    except ImportError:
        return
    twisted_socks.TwistedSOCKS.module = socksServer.module
    twisted_socks.TwistedSOCKS.name = socksServer.name
    twisted_socks.TwistedSOCKS.description = socksServer.description


_takeOverTwistedSOCKS()

# Client endpoint-string parsers: socks5:, socks4a:, socks4: (see
# socks_twisted.client._parsers for the syntax).
from socks_twisted.client import SOCKSClientParser  # noqa: E402

socks5ClientParser = SOCKSClientParser("socks5")
socks4aClientParser = SOCKSClientParser("socks4a")
socks4ClientParser = SOCKSClientParser("socks4")
