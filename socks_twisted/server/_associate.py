"""
UDP ASSOCIATE: open the association's UDP port and hand it to the session.
"""

from twisted.internet import defer

from .._addresses import familyOfAddress, hostAndPort
from .._wire import SOCKS5ReplyCode
from ._command import Associated, CommandContext, Outcome, RefusedError, Request
from ._local import replyAddress, serviceInterface
from ._udp import UDPAssociation


def associate(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a UDP ASSOCIATE: a relay for datagrams from the client's IP (and
    the port it named, if any), or L{RefusedError}.
    """
    family = familyOfAddress(context.localAddress)
    clientHost, _ = hostAndPort(context.client.getPeer())
    association = UDPAssociation(
        clientHost,
        request.port,
        family,
        context.network.resolve,
        context.ownAddresses,
    )
    interface = serviceInterface(context.localAddress, family)
    try:
        port = context.network.listenUDP(interface, association)
    except Exception as e:
        return defer.fail(
            RefusedError(SOCKS5ReplyCode.GENERAL_FAILURE, f"no UDP port: {e}")
        )
    address = replyAddress(port.getHost(), context.settings.externalAddress)
    return defer.succeed(Associated(association, port, address))
