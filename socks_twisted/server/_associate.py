"""
UDP ASSOCIATE: open the association's UDP port and hand it to the session.
"""

from twisted.internet import defer

from .._addresses import familyOfAddress, hostAndPort
from .._wire import SOCKS5ReplyCode
from ._command import Associated, CommandContext, Outcome, RefusedError, Request
from ._datagramrules import DatagramRules
from ._local import replyAddress, serviceInterface
from ._udp import UDPAssociation
from ._upstream import upstreamFor
from ._upstreamudp import associateVia


def associate(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a UDP ASSOCIATE: a relay for datagrams from the client's IP (and
    the port it named, if any), or L{RefusedError}; or, routed through an
    upstream proxy, a relay that feeds the upstream's association.
    """
    try:
        upstream = upstreamFor(context)
    except RefusedError:
        return defer.fail()
    if upstream is not None:
        return associateVia(request, context, upstream)
    family = familyOfAddress(context.localAddress)
    clientHost, _ = hostAndPort(context.client.getPeer())
    association = UDPAssociation(
        clientHost,
        request.port,
        family,
        context.network.resolve,
        context.ownAddresses,
        DatagramRules(context).permit,
        context.sessionID,
        protection=context.datagramProtection,
    )
    interface = serviceInterface(context.localAddress, family)
    try:
        port = context.network.listenUDP(interface, association)
    except Exception as e:
        return defer.fail(
            RefusedError(SOCKS5ReplyCode.GENERAL_FAILURE, f"no UDP port: {e}")
        )
    address = replyAddress(port.getHost(), context.settings.externalAddresses)
    return defer.succeed(Associated(association, port, address))
