"""
UDP ASSOCIATE: open the association's UDP port and hand it to the session.
"""

from dataclasses import replace

from twisted.internet import defer

from .._addresses import familyOfAddress, formatHostPort, hostAndPort
from .._wire import SOCKS5ReplyCode
from ._command import Associated, CommandContext, Outcome, RefusedError, Request
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
    policy, asked = context.policy, context.policyRequest

    def permit(address: str, port: int, name: str | None) -> str | None:
        destination = replace(asked, host=name or address, port=port)
        decision = policy.decide(destination, address)
        if decision.allowed:
            return None
        rule = decision.rule.describe() if decision.rule is not None else "the rules"
        context.metrics.denied(rule)
        where = formatHostPort(name or address, port)
        return f"datagrams to {where} denied by {rule}"

    association = UDPAssociation(
        clientHost,
        request.port,
        family,
        context.network.resolve,
        context.ownAddresses,
        permit,
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
